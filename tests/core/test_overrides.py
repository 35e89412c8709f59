"""The shared recipe-file reader: dotted overrides, list items, YAML errors, unknown keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from feilun.core.errors import ConfigError
from feilun.core.overrides import (
    Yaml,
    apply_overrides,
    did_you_mean,
    known_keys,
    read_mapping,
    unknown_keys,
    where,
)

YAML = Yaml(yaml.safe_load, yaml.YAMLError)


def overridden(raw: dict[str, Any], *overrides: str) -> dict[str, Any]:
    apply_overrides(raw, overrides, YAML, example="`a.b=1`")
    return raw


def test_dotted_keys_list_items_and_yaml_values() -> None:
    raw = {"train": {"lr": 0.1}, "ops": [{"x": 1}, {"x": 2}]}
    assert overridden(
        raw, "train.lr=0.5", "lora.targets=[q, v]", "ops[1].x=3", "ops.0.x=0", "name=a=b"
    ) == {
        "train": {"lr": 0.5},
        "ops": [{"x": 0}, {"x": 3}],
        "lora": {"targets": ["q", "v"]},
        "name": "a=b",
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lr", "override 'train.lr' is not key=value"),
        ("=1", "is not key=value"),
        ("train..lr=1", "has an empty key part"),
        ("train.lr.x=1", "train.lr is a value, not a section"),
        ("ops[5].x=1", r"ops\[5\] does not exist"),
        ("train.lr=[1", r"override 'train.lr=\[1' is not valid YAML at line 1"),
    ],
)
def test_bad_overrides_name_what_was_written(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        overridden({"train": {"lr": 0.1}, "ops": [{"x": 1}]}, override)


def test_resolve_rewrites_the_key_first() -> None:
    raw = {"ops": [{"op": "a"}, {"op": "b"}]}

    def by_name(parts: list[Any], override: str) -> list[Any]:
        index = [o["op"] for o in raw["ops"]].index(parts[0])
        return ["ops", index, *parts[1:]]

    apply_overrides(raw, ["b.k=1"], YAML, example="", resolve=by_name)
    assert raw["ops"][1] == {"op": "b", "k": 1}
    assert where(["ops", 1, "k"]) == "ops[1].k"


def test_read_mapping_errors(tmp_path: Path) -> None:
    kwargs = {"shape": "of keys", "shipped": "see recipes/", "start": "copy one"}
    with pytest.raises(ConfigError, match="cannot read recipe") as error:
        read_mapping(tmp_path / "none.yaml", YAML, **kwargs)
    assert error.value.fix == "check the path; see recipes/"
    path = tmp_path / "r.yaml"
    path.write_text("- a\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a mapping of keys, got list"):
        read_mapping(path, YAML, **kwargs)
    path.write_text("a: 1\nb: [2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"recipe .*r.yaml is not valid YAML at line 3"):
        read_mapping(path, YAML, **kwargs)
    path.write_text("a: 1\n", encoding="utf-8")
    assert read_mapping(path, YAML, **kwargs) == {"a": 1}


class Inner(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    rank: int = 8


class Outer(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    lora: Inner = pydantic.Field(default_factory=Inner)
    seed: int = 0


def test_unknown_keys_get_the_closest_known_key() -> None:
    assert known_keys(Outer) == ["lora", "lora.rank", "seed"]
    with pytest.raises(pydantic.ValidationError) as error:
        Outer.model_validate({"lora": {"rnak": 4}, "sede": 1, "zzz": 0})
    assert unknown_keys(error.value, Outer) == [
        "lora.rnak (did you mean lora.rank?)",
        "sede (did you mean seed?)",
        "zzz",
    ]
    assert did_you_mean("zzz", ["seed"]) == ""
