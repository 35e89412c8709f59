"""Plugins that are the modules of a package folder, named by file stem (recipes, engines)."""

from __future__ import annotations

import pkgutil
from collections.abc import Iterable

from feilun.core.errors import PluginError
from feilun.core.overrides import did_you_mean


def module_names(package_path: Iterable[str]) -> list[str]:
    """The public modules of a package folder, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(package_path) if not m.name.startswith("_"))


def check_module_name(name: str, known: list[str], *, kind: str, fix: str) -> None:
    """Fail on an unknown `kind` with the list and the closest name (nothing is imported)."""
    if name not in known:
        raise PluginError(
            f"unknown {kind} {name!r}{did_you_mean(name, known)}; {kind}s: {', '.join(known)}",
            fix,
        )
