"""Engines that start a run's processes, one file each, registered under the file stem.

Each module exposes `launch(nproc: int, argv: Sequence[str]) -> int`: run the `feilun` command
`argv` (a `train resume`) in `nproc` processes joined in one torch process group, and return
0 when every process finished. The recipes need no change: they see a `World` of N ranks.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Sequence
from typing import Protocol, cast

from feilun.core.errors import PluginError


class Engine(Protocol):
    """What an engine module provides."""

    def launch(self, nproc: int, argv: Sequence[str]) -> int:
        """Run `feilun <argv>` in `nproc` processes; 0 when all of them succeeded."""
        ...


def engine_names() -> list[str]:
    """The engines that exist, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def lookup_engine(name: str) -> Engine:
    """The engine module `name`; an unknown name fails with the list and the closest one."""
    known = engine_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise PluginError(
            f"unknown engine {name!r}{hint}; engines: {', '.join(known)}",
            "pass --engine with one of those; a new engine is a module in "
            "feilun/training/engines/ with a `launch(nproc, argv)` function",
        )
    return cast(Engine, importlib.import_module(f"{__name__}.{name}"))
