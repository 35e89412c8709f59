"""Adapters on their base: adapter-on-base and merged weights answer alike; files are verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from feilun.core.errors import ArtifactError, ConfigError
from feilun.core.protocols import GenerationParams
from feilun.core.records import Adapter, Message
from feilun.models.merge import load_adapter, write_merged
from feilun.models.registry import ModelRegistry
from feilun.models.runtimes.transformers import TransformersChatModel
from feilun.models.sources.files import sha256_file
from feilun.models.sources.safetensors import SOURCE as SAFETENSORS
from feilun.store.catalog import SqlCatalog
from feilun.store.database import open_database
from feilun.store.migrate import upgrade

PROMPTS = ["What is the capital of France?", "你好！", "Hello!", "What is two plus two?"]
GREEDY = GenerationParams(max_tokens=12, temperature=0.0)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    database = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(database)
    return ModelRegistry(SqlCatalog(database), tmp_path / "cache")


def _random_adapter(base_dir: Path, folder: Path) -> dict[str, str]:
    """A LoRA adapter with non-zero B (so merging changes the weights); its file digests."""
    from peft import LoraConfig, get_peft_model

    model, _ = SAFETENSORS.load(str(base_dir), folder)
    torch.manual_seed(0)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    return {p.name: f"sha256:{sha256_file(p)}" for p in folder.iterdir() if p.is_file()}


def _greedy(model: Any, tokenizer: Any) -> list[list[int]]:
    """transformers' own greedy decoding of each prompt (chat template applied): new token ids."""
    out = []
    for prompt in PROMPTS:
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=False,
        )  # (1, T)
        generated = model.generate(input_ids=ids, max_new_tokens=12, do_sample=False)  # (1, T+n)
        out.append(generated[0, ids.shape[1] :].tolist())
    return out


def test_adapter_on_base_and_merged_model_answer_the_same(
    registry: ModelRegistry, tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = registry.add("tiny", "safetensors", str(tiny_model_dir))
    folder = tmp_path / "adapter"
    files = _random_adapter(tiny_model_dir, folder)
    adapter = registry.add_adapter(
        Adapter(name="rand", base_model=base.ref, meta={"location": str(folder), "files": files})
    )
    model, tokenizer = SAFETENSORS.load(str(tiny_model_dir), tmp_path)
    on_base = load_adapter(model, adapter)
    merged_dir = write_merged(
        registry.resolve("tiny:rand"), registry.cache_dir, tmp_path / "merged"
    )
    merged, merged_tokenizer = SAFETENSORS.load(str(merged_dir), tmp_path)
    plain, _ = SAFETENSORS.load(str(tiny_model_dir), tmp_path)

    ids = torch.tensor([tokenizer.encode("The flywheel turns slowly at first.")])  # (1, T)
    with torch.no_grad():
        logits_adapter = on_base(input_ids=ids).logits  # (1, T, V)
        logits_merged = merged(input_ids=ids).logits
        logits_plain = plain(input_ids=ids).logits
    assert torch.allclose(logits_adapter, logits_merged, atol=1e-4)
    assert not torch.allclose(logits_plain, logits_merged, atol=1e-3)  # the adapter matters

    assert _greedy(on_base, tokenizer) == _greedy(merged, merged_tokenizer)

    served = registry.open("tiny:rand")  # merged on load, our own decoding loop
    assert isinstance(served, TransformersChatModel) and served.name == "tiny:rand"
    served_exact = TransformersChatModel(merged, merged_tokenizer, name="m", quantize="none")
    answers = [served_exact.chat([Message(role="user", content=p)], GREEDY) for p in PROMPTS]
    expected = [
        merged_tokenizer.decode(ids, skip_special_tokens=True)
        for ids in _greedy(merged, merged_tokenizer)
    ]
    assert [a.text for a in answers] == [e.split("<|im_end|>")[0] for e in expected]
    with pytest.raises(ConfigError, match="exists"):
        write_merged(registry.resolve("tiny:rand"), registry.cache_dir, merged_dir)
    with pytest.raises(ConfigError, match="nothing to merge"):
        write_merged(registry.resolve("tiny"), registry.cache_dir, tmp_path / "m2")


def test_changed_adapter_files_are_refused(
    registry: ModelRegistry, tiny_model_dir: Path, tmp_path: Path
) -> None:
    base = registry.add("tiny", "safetensors", str(tiny_model_dir))
    folder = tmp_path / "adapter"
    files = _random_adapter(tiny_model_dir, folder)
    registry.add_adapter(
        Adapter(name="rand", base_model=base.ref, meta={"location": str(folder), "files": files})
    )
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactError, match="missing or changed"):
        registry.open("tiny:rand")
