"""The sft_lora recipe on the tiny model: loss falls, report card, registered adapter, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import Adapter
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.runs import open_run, read_metrics, show_run, start_run

RECIPES = Path(__file__).parents[2] / "recipes" / "train"


def train(
    resources: Resources,
    overrides: list[str] = (),
    run_id: str = "r1",
    recipe: str = "tiny_sft_lora",
) -> dict[str, Any]:
    run = start_run(resources, RECIPES / f"{recipe}.yaml", list(overrides), run_id)
    manifest = execute_run(resources, run)
    assert manifest is not None
    return manifest


def test_loss_falls_on_a_memorisable_set(resources: Resources) -> None:
    manifest = train(resources, ["data.val_fraction=0.25", "train.eval_every=20"])
    metrics = manifest["metrics"]
    losses = [m["loss"] for m in read_metrics(open_run(resources.runs_root, "r1")) if "loss" in m]
    assert len(losses) == metrics["steps"] == 60  # 6 training examples, 2 steps, 30 epochs
    assert losses[-1] < 0.2 * losses[0], (losses[0], losses[-1])
    assert metrics["val_loss_before"] > 0 and metrics["val_loss"] > 0
    assert manifest["data"]["skipped"] == {"malformed": 1, "no_assistant_turn": 1}
    assert (manifest["data"]["train"], manifest["data"]["validation"]) == (6, 2)
    assert metrics["tokens_per_s"] > 0 and metrics["peak_memory_mb"] > 0


def test_report_card_and_registered_adapter(resources: Resources) -> None:
    manifest = train(resources)
    folder = Path(manifest["folder"])
    on_disk = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(manifest))
    for key in ("recipe", "recipe_hash", "git_sha", "packages", "hardware", "inputs", "data"):
        assert key in manifest
    assert manifest["packages"]["peft"] and manifest["hardware"]["cpu_count"]
    for key in ("train_loss", "tokens_per_s", "peak_memory_mb", "wall_time_s"):
        assert key in manifest["metrics"]
    report = (folder / "report.md").read_text(encoding="utf-8")
    assert "tiny:greetings-sft-lora@1" in report and manifest["inputs"]["dataset_id"] in report

    assert manifest["result"] == "tiny:greetings-sft-lora@1"
    resolved = resources.models.resolve(manifest["result"])
    adapter = resolved.adapter
    assert isinstance(adapter, Adapter)
    assert adapter.inputs == [manifest["inputs"]["dataset_id"], resolved.base.id]
    assert adapter.dataset == "greetings@1" and adapter.base_model == "tiny@1"
    assert adapter.recipe_hash == manifest["recipe_hash"]
    assert adapter.chat_template == resolved.base.chat_template
    assert adapter.metrics["train_loss"] == manifest["metrics"]["train_loss"]
    assert resources.artifacts.exists(adapter.artifact)
    assert {"adapter_config.json", "adapter_model.safetensors", "chat_template.jinja"} <= set(
        adapter.meta["files"]
    )

    shown = show_run(resources.runs_root, "r1")
    assert shown["status"] == "completed" and shown["result"] == manifest["result"]
    assert shown["step"] == manifest["metrics"]["steps"] and len(shown["losses"]) == shown["step"]


def test_full_fine_tuning_registers_a_new_base_model(resources: Resources) -> None:
    manifest = train(
        resources, ["method=full", "train.lr=3e-3", "train.max_steps=6", "adapter=tiny-full"]
    )
    assert manifest["result"] == "tiny-full@1"
    model = resources.models.get("tiny-full")
    assert model.meta["training"]["dataset"] == "greetings@1"
    assert (Path(model.location) / "model.safetensors").is_file()


def test_packing_trains_on_fewer_longer_rows(resources: Resources) -> None:
    manifest = train(resources, ["data.packing=true", "train.max_steps=4"])
    assert manifest["data"]["train"] < manifest["data"]["kept"]


def test_unknown_base_model_and_dataset_list_candidates(resources: Resources) -> None:
    with pytest.raises(NotFound, match="unknown model 'gpt-9'; registered: tiny"):
        train(resources, ["base_model=gpt-9"])
    with pytest.raises(
        NotFound, match="no dataset named 'nope'; datasets: corpus, greetings, prefs"
    ):
        train(resources, ["dataset=nope"], run_id="r2")
    with pytest.raises(NotFound, match="has no version 7; versions: 1"):
        train(resources, ["dataset=greetings@7"], run_id="r3")
    assert not resources.runs_root.exists() or not any(resources.runs_root.iterdir())


def test_bad_schedule_and_empty_data_fail_before_training(resources: Resources) -> None:
    with pytest.raises(ConfigError, match="train.warmup_steps=50 must be < train.max_steps=10"):
        train(resources, ["train.max_steps=10", "train.warmup_steps=50"])
    with pytest.raises(ConfigError, match="greetings@1 leaves no training examples"):
        train(resources, ["data.max_seq_len=8"], run_id="r2")
    assert show_run(resources.runs_root, "r2")["status"] == "failed"


def test_missing_chat_template_says_how_to_supply_one(
    resources: Resources, tiny_base_dir: Path, tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(tiny_base_dir, bare)
    (bare / "chat_template.jinja").unlink()
    resources.models.add("bare", "safetensors", str(bare))
    with pytest.raises(ConfigError, match="has no chat template") as error:
        train(resources, ["base_model=bare"])
    assert "data.chat_template" in (error.value.fix or "")
    from feilun.models.tiny import CHAT_TEMPLATE

    manifest = train(
        resources,
        ["base_model=bare", f"data.chat_template={json.dumps(CHAT_TEMPLATE)}", "train.max_steps=3"],
        run_id="r2",
    )
    assert manifest["result"].startswith("bare:")


def test_memory_preflight_refuses_with_settings_that_fit(resources: Resources) -> None:
    with pytest.raises(ConfigError, match=r"needs about \d+ MiB but 610 MiB is available") as error:
        train(
            resources, ["memory_budget_mb=610", "train.micro_batch_size=4", "data.max_seq_len=512"]
        )
    assert "train.micro_batch_size=" in (error.value.fix or "")


def test_trained_adapter_is_served_by_name(resources: Resources) -> None:
    from feilun.core.protocols import GenerationParams
    from feilun.core.records import Message

    manifest = train(resources)
    model = resources.models.open("tiny:greetings-sft-lora")  # what the gateway calls
    params = GenerationParams(max_tokens=24)
    for question, answer in [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("中国的首都是哪里？", "中国的首都是北京。"),
    ]:
        reply = model.chat([Message(role="user", content=question)], params)
        assert reply.text == answer, manifest["metrics"]


def test_qlora_is_refused_naming_what_is_missing_and_the_alternatives(
    resources: Resources,
) -> None:
    needs = "method=qlora needs a CUDA GPU and bitsandbytes"
    with pytest.raises(ConfigError, match=needs) as error:
        train(resources, ["method=qlora"])
    assert "method=lora" in (error.value.fix or "") and "method=full" in (error.value.fix or "")
    assert show_run(resources.runs_root, "r1")["status"] == "failed"
    assert resources.models.adapters() == []
