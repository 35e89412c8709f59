"""Plugin registry over entry-point groups: built-ins register exactly as third parties do.

`lookup("runtimes", "transformers")` loads the object registered under that name in the
entry-point group `feilun.runtimes`. Unknown names fail listing the names that exist.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from feilun.core.errors import PluginError

GROUP_PREFIX = "feilun."


@cache
def _group(kind: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP_PREFIX + kind)}


def names(kind: str) -> list[str]:
    """Registered names in the group `feilun.<kind>`, sorted."""
    return sorted(_group(kind))


def lookup(kind: str, name: str) -> Any:
    """Load the object registered as `name` in `feilun.<kind>`."""
    found = _group(kind).get(name)
    if found is None:
        known = ", ".join(names(kind)) or "none"
        raise PluginError(
            f"unknown {kind.rstrip('s')} {name!r}; registered: {known}",
            f"pick one of those, or register yours under the entry-point group "
            f"'{GROUP_PREFIX}{kind}' in your package's pyproject.toml",
        )
    try:
        return found.load()
    except ImportError as e:
        raise PluginError(
            f"{kind.rstrip('s')} {name!r} is registered but cannot be imported: {e}",
            "install the extra it needs (for example `pip install 'feilun[all]'`)",
        ) from e
