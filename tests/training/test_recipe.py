"""Recipe YAML: every shipped recipe validates; bad keys and values are named with a fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from feilun.core.errors import ConfigError, PluginError
from feilun.training.recipe import load_recipe, shipped_recipes_dir
from feilun.training.recipes import lookup_recipe, recipe_names
from feilun.training.schedule import plan_steps

SHIPPED = sorted((Path(__file__).parents[2] / "recipes" / "train").glob("*.yaml"))
TINY = Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml"


def test_recipes_are_found() -> None:
    assert shipped_recipes_dir() == SHIPPED[0].parent
    assert {"sft_lora", "dpo_lora", "cpt_lora"} <= set(recipe_names())
    for method in ("sft", "dpo", "cpt"):
        assert any(p.stem.endswith(f"{method}_lora") for p in SHIPPED if "tiny" in p.stem)
        assert any(p.stem.endswith(f"{method}_lora") for p in SHIPPED if "smollm2" in p.stem)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_recipe_validates(path: Path) -> None:
    recipe = load_recipe(path)
    lookup_recipe(recipe.recipe)
    first, second = path.read_text(encoding="utf-8").splitlines()[:2]
    assert first.startswith("# ") and f"training/recipes/{recipe.recipe}.py" in first
    assert f"feilun train run recipes/train/{path.name}" in second


def test_overrides_and_hash() -> None:
    recipe = load_recipe(TINY, ["train.lr=1e-4", "lora.targets=[q_proj]", "adapter=mine"])
    assert recipe.train.lr == 1e-4 and recipe.lora.targets == ["q_proj"]
    assert recipe.adapter_name == "mine"
    assert recipe.recipe_hash != load_recipe(TINY).recipe_hash
    assert load_recipe(TINY).recipe_hash == load_recipe(TINY).recipe_hash
    assert load_recipe(TINY).adapter_name == "greetings-sft-lora"


def test_unknown_keys_are_named_with_the_closest_known_key(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) train.lrr \(did you mean train.lr\?\)"
    ):
        load_recipe(TINY, ["train.lrr=1e-4"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text(encoding="utf-8") + "lora_rank: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lora_rank \(did you mean lora.rank\?\)"):
        load_recipe(bad)


def test_bad_values_name_the_key_and_its_help() -> None:
    with pytest.raises(ConfigError, match="train.lr: Input should be greater than 0") as error:
        load_recipe(TINY, ["train.lr=-1"])
    assert "Peak learning rate" in (error.value.fix or "")
    with pytest.raises(ConfigError, match="not key=value"):
        load_recipe(TINY, ["train.lr"])
    with pytest.raises(ConfigError, match="cannot read recipe"):
        load_recipe(TINY.parent / "missing.yaml")


def test_unknown_recipe_code_suggests_the_closest() -> None:
    with pytest.raises(PluginError, match=r"unknown recipe 'sft_lor' \(did you mean sft_lora\?\)"):
        lookup_recipe("sft_lor")


def test_warmup_must_end_before_training_does() -> None:
    recipe = load_recipe(TINY, ["train.max_steps=500", "train.warmup_steps=900"])
    with pytest.raises(ConfigError, match=r"train.warmup_steps=900 must be < train.max_steps=500"):
        plan_steps(8, recipe.train)
    recipe = load_recipe(TINY, ["train.epochs=1", "train.warmup_steps=2"])
    with pytest.raises(ConfigError, match=r"must be < the steps of 1 epoch\(s\)=2"):
        plan_steps(8, recipe.train)
