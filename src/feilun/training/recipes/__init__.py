"""Training recipes, one readable file each, registered under the file stem (`sft_lora`).

Each module exposes `train(ctx: RunContext) -> RunResult`. Recipes never inherit from each
other: a new one starts as a copy of the closest and changes what differs.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from types import ModuleType

from feilun.core.errors import PluginError


def recipe_names() -> list[str]:
    """The recipes that exist, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def check_recipe_name(name: str) -> None:
    """Fail on an unknown recipe with the list and the closest name (nothing is imported)."""
    known = recipe_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise PluginError(
            f"unknown recipe {name!r}{hint}; recipes: {', '.join(known)}",
            "set `recipe:` to one of those; a new recipe is a copy of the closest one in "
            "feilun/training/recipes/ with what differs changed",
        )


def lookup_recipe(name: str) -> ModuleType:
    """The recipe module `name`; unknown names fail with the list and the closest one."""
    check_recipe_name(name)
    return importlib.import_module(f"{__name__}.{name}")
