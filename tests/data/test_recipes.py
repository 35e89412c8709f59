"""Recipes: every shipped recipe loads; bad ones fail naming the key as the user wrote it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from feilun.core.errors import ConfigError, PluginError
from feilun.data.items import Item
from feilun.data.recipes import load_recipe, recipe_of, validate_recipe

ROOT = Path(__file__).parents[2]
SHIPPED = sorted((ROOT / "recipes" / "data").glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


DEDUP = """\
description: exact then near dedup
operators:
  - op: exact_dedup
    ignore_case: true
  - op: near_dedup
    threshold: 0.7
"""


def test_recipes_are_shipped() -> None:
    assert SHIPPED, "recipes/data/ has no recipe"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_recipe_loads_and_says_how_to_run_it(path: Path) -> None:
    recipe = load_recipe(path)
    assert recipe.description and recipe.steps
    assert all(step.version for step in recipe.steps)
    opening = path.read_text(encoding="utf-8").splitlines()[:4]
    assert opening[0].startswith("# ")
    command = f"feilun data clean COLLECTION --recipe recipes/data/{path.name}"
    assert any(command in line for line in opening), opening


def test_default_recipe_runs_the_documented_operators_in_order() -> None:
    recipe = load_recipe(ROOT / "recipes" / "data" / "default.yaml")
    ops = [step.op for step in recipe.steps]
    assert ops == ["normalize", "language", "quality", "pii", "exact_dedup", "near_dedup"]
    assert [s.is_set_operator for s in recipe.steps] == [False] * 4 + [True] * 2


def test_load_fills_defaults_and_records_versions(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, DEDUP))
    exact, near = recipe.steps
    assert exact.params["ignore_case"] is True and exact.params["ignore_whitespace"] is True
    assert near.params["threshold"] == 0.7 and near.params["num_perm"] == 128
    assert near.operator.params.threshold == 0.7  # the operator was built with those params
    resolved = recipe.resolved()
    assert resolved["source"] == str(tmp_path / "recipe.yaml")
    assert resolved["operators"][1] == {"op": "near_dedup", "version": "1", "params": near.params}


def test_bad_param_names_the_file_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, DEDUP.replace("threshold: 0.7", "threshold: 1.5"))
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    message = caught.value.message
    assert message.startswith(f"{path}: operators[1].threshold: ")
    assert "1.5" in message
    assert "num_perm" in (caught.value.fix or "")  # the fix lists the valid parameters


def test_unknown_param_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, DEDUP.replace("ignore_case: true", "ignore_caps: true"))
    with pytest.raises(ConfigError, match=r"operators\[0\]\.ignore_caps: Extra inputs"):
        load_recipe(path)


def test_unknown_operator_lists_the_registered_ones(tmp_path: Path) -> None:
    path = write(tmp_path, DEDUP.replace("op: near_dedup", "op: fuzzy_dedup"))
    with pytest.raises(ConfigError) as caught:
        load_recipe(path)
    assert "operators[1].op" in caught.value.message
    assert "fuzzy_dedup" in caught.value.message and "near_dedup" in caught.value.message
    assert "feilun.operators" in (caught.value.fix or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("operators:\n  - op: exact_dedup\n", r"description: Field required"),
        ("description: x\noperators: []\n", r"operators: List should have at least 1"),
        ("description: x\noperators:\n  - threshold: 1\n", r"operators\[0\]\.op: Field required"),
        (DEDUP + "engine: ray\n", r"engine: Extra inputs are not permitted"),
        ("- just\n- a list\n", r"must be a mapping"),
        ("description: [unclosed\n", r"not valid YAML at line 2"),
    ],
)
def test_malformed_recipes(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_recipe(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides_by_operator_name_and_by_position(tmp_path: Path) -> None:
    path = write(tmp_path, DEDUP)
    recipe = load_recipe(
        path,
        [
            "near_dedup.threshold=0.9",
            "operators[0].ignore_case=false",
            "operators.1.num_perm=64",
            "description=tuned",
        ],
    )
    assert recipe.description == "tuned"
    assert recipe.steps[0].params["ignore_case"] is False
    assert recipe.steps[1].params["threshold"] == 0.9
    assert recipe.steps[1].params["num_perm"] == 64


def test_overridden_values_are_validated_like_written_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"operators\[1\]\.num_perm: .*got 1"):
        load_recipe(write(tmp_path, DEDUP), ["near_dedup.num_perm=1"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("near_dedup.threshold", "is not key=value"),
        ("quality.min_chars=5", r"'quality' is not an operator of .*exact_dedup, near_dedup"),
        ("operators[7].threshold=0.5", r"operators\[7\] does not exist"),
        ("speed=fast", "unknown key 'speed'"),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_recipe(write(tmp_path, DEDUP), [override])


def test_override_of_a_repeated_operator_must_use_its_position(tmp_path: Path) -> None:
    twice = DEDUP + "  - op: near_dedup\n"
    with pytest.raises(ConfigError, match="appears more than once") as caught:
        load_recipe(write(tmp_path, twice), ["near_dedup.threshold=0.5"])
    assert "operators[1].threshold" in (caught.value.fix or "")
    recipe = load_recipe(write(tmp_path, twice), ["operators[2].threshold=0.5"])
    assert [s.params["threshold"] for s in recipe.steps[1:]] == [0.7, 0.5]


class Shout:
    name: ClassVar[str] = "shout"
    version: ClassVar[str] = "2"

    def process(self, item: Item) -> Item:
        return Item(item.id, item.text.upper(), item.meta)


class Broken:
    name: ClassVar[str] = "broken"
    version: ClassVar[str] = "1"


def test_recipe_of_built_operators() -> None:
    recipe = recipe_of([Shout()], description="shout")
    assert recipe.resolved()["operators"] == [{"op": "shout", "version": "2", "params": {}}]
    assert not recipe.steps[0].is_set_operator


def test_an_object_that_is_not_an_operator_is_refused() -> None:
    with pytest.raises(PluginError, match="neither a row operator"):
        recipe_of([Broken()])


def test_validate_recipe_from_a_dict() -> None:
    recipe = validate_recipe({"description": "d", "operators": [{"op": "exact_dedup"}]}, "inline")
    assert recipe.source == "inline" and recipe.steps[0].op == "exact_dedup"
