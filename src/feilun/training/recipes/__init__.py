"""Training recipes, one readable file each, registered under the file stem (`sft_lora`).

Each module exposes `train(ctx: RunContext) -> RunResult`. Recipes never inherit from each
other: a new one starts as a copy of the closest and changes what differs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from feilun.training.modules import check_module_name, module_names


def recipe_names() -> list[str]:
    """The recipes that exist, sorted."""
    return module_names(__path__)


def check_recipe_name(name: str) -> None:
    """Fail on an unknown recipe with the list and the closest name (nothing is imported)."""
    check_module_name(
        name,
        recipe_names(),
        kind="recipe",
        fix="set `recipe:` to one of those; a new recipe is a copy of the closest one in "
        "feilun/training/recipes/ with what differs changed",
    )


def lookup_recipe(name: str) -> ModuleType:
    """The recipe module `name`; unknown names fail with the list and the closest one."""
    check_recipe_name(name)
    return importlib.import_module(f"{__name__}.{name}")
