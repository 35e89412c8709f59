"""Engines that start a run's processes, one file each, registered under the file stem.

Each module exposes `launch(nproc: int, argv: Sequence[str]) -> int`: run the `feilun` command
`argv` (a `train resume`) in `nproc` processes joined in one torch process group, and return
0 when every process finished. The recipes need no change: they see a `World` of N ranks.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, cast

from feilun.training.modules import check_module_name, module_names


class Engine(Protocol):
    """What an engine module provides."""

    def launch(self, nproc: int, argv: Sequence[str]) -> int:
        """Run `feilun <argv>` in `nproc` processes; 0 when all of them succeeded."""
        ...


def engine_names() -> list[str]:
    """The engines that exist, sorted."""
    return module_names(__path__)


def lookup_engine(name: str) -> Engine:
    """The engine module `name`; an unknown name fails with the list and the closest one."""
    check_module_name(
        name,
        engine_names(),
        kind="engine",
        fix="pass --engine with one of those; a new engine is a module in "
        "feilun/training/engines/ with a `launch(nproc, argv)` function",
    )
    return cast(Engine, importlib.import_module(f"{__name__}.{name}"))
