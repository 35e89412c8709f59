"""`feilun recipes ls|cp|validate`: the shipped training recipes, copied and checked."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table
from feilun.core.errors import ConfigError, NotFound

app = typer.Typer(help="List, copy and validate training recipes.", no_args_is_help=True)


def _shipped() -> dict[str, Path]:
    from feilun.training.recipe import shipped_recipes_dir

    folder = shipped_recipes_dir()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder else {}


def _summary(path: Path) -> str:
    """The first comment line: what the recipe does."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@app.command("ls")
def ls(json: options.Json = False) -> None:
    """List the shipped recipes."""
    from feilun.training.recipe import load_recipe

    rows = []
    for name, path in _shipped().items():
        recipe = load_recipe(path)
        rows.append((name, recipe.recipe, recipe.base_model, recipe.dataset, _summary(path)))
    if json:
        keys = ("name", "recipe", "base_model", "dataset", "description")
        print_json([dict(zip(keys, row, strict=True)) for row in rows])
        return
    print_table("recipes", ["name", "recipe", "base model", "dataset", "what it does"], rows)


@app.command("cp")
def cp(
    name: Annotated[str, typer.Argument(help="Shipped recipe name (see `feilun recipes ls`).")],
    dest: Annotated[Path, typer.Argument(help="File (or folder) to copy it to.")],
) -> None:
    """Copy a shipped recipe to edit it."""
    shipped = _shipped()
    if name not in shipped:
        raise NotFound(
            f"no shipped recipe {name!r}; recipes: {', '.join(shipped) or 'none'}",
            "see `feilun recipes ls`",
        )
    target = dest / f"{name}.yaml" if dest.is_dir() else dest
    if target.exists():
        raise ConfigError(f"{target} exists", "pick another destination or remove it first")
    shutil.copyfile(shipped[name], target)
    typer.echo(f"copied {name} to {target}; run it with `feilun train run {target}`")


@app.command("validate")
def validate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML to check.")],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Overrides to apply first, e.g. train.lr=1e-4.", show_default=False),
    ] = None,
    json: options.Json = False,
) -> None:
    """Check a recipe's keys and values; print it resolved, every key with its help."""
    from feilun.training.recipe import describe_keys, load_recipe
    from feilun.training.recipes import check_recipe_name

    loaded = load_recipe(recipe, overrides or [])
    check_recipe_name(loaded.recipe)
    if json:
        print_json(loaded.model_dump(mode="json"))
        return
    resolved = _flatten(loaded.model_dump(mode="json"))
    rows = [(key, resolved.get(key, ""), help_text) for key, _default, help_text in describe_keys()]
    print_table(f"{recipe}: valid ({loaded.recipe})", ["key", "value", "help"], rows)


def _flatten(value: dict[str, object], prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[prefix + key] = item
    return flat
