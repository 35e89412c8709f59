from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from feilun.models import tiny
from feilun.models.tiny import CHAT_TEMPLATE, build_tiny_model, save_tiny_model

MESSAGES = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "中国的首都呢？"},
]
# ChatML written out by hand, the shape SmolLM2-Instruct's template produces.
CHATML = (
    "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\nParis.<|im_end|>\n"
    "<|im_start|>user\n中国的首都呢？<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_build_is_fast_after_first_call() -> None:
    build_tiny_model()
    started = time.perf_counter()
    model, tokenizer = build_tiny_model("qwen2", seed=5)
    assert time.perf_counter() - started < 1.0
    assert model.config.num_hidden_layers == 2
    assert model.config.hidden_size == 64
    assert model.config.vocab_size == len(tokenizer) == tiny.VOCAB_SIZE


def test_weights_are_deterministic_for_a_seed_and_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, _ = build_tiny_model(seed=7)
    assert torch.equal(torch.rand(1), expected)
    b, _ = build_tiny_model(seed=7)
    c, _ = build_tiny_model(seed=8)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tokenizer_training_is_deterministic() -> None:
    first = tiny._trained_tokenizer_json()
    tiny._trained_tokenizer_json.cache_clear()
    assert tiny._trained_tokenizer_json() == first


def test_tokenizer_is_byte_level_bpe_with_chatml_specials() -> None:
    _, tokenizer = build_tiny_model()
    for special in ("<|im_start|>", "<|im_end|>", "<|endoftext|>"):
        ids = tokenizer(special, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, special
    text = "The capital of France is Paris. 法国的首都是巴黎。🙂 unseen-wörds"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    # Merges learned from the corpus: common words are one token, not bytes.
    assert len(tokenizer(" capital", add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.eos_token == "<|im_end|>"


def test_chat_template_renders_chatml_like_apply_chat_template() -> None:
    _, tokenizer = build_tiny_model()
    rendered = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert rendered == CHATML
    ids = tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=False)
    assert ids == tokenizer(CHATML, add_special_tokens=False)["input_ids"]
    default_system = tokenizer.apply_chat_template(
        MESSAGES[1:2], tokenize=False, add_generation_prompt=False
    )
    assert default_system.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")


def test_model_is_trainable() -> None:
    model, tokenizer = build_tiny_model(seed=3)
    ids = torch.tensor([tokenizer("The flywheel turns slowly at first.")["input_ids"]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(15):
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "tiny", arch="qwen2", seed=4)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in folder.iterdir()
    }
    model, tokenizer = build_tiny_model("qwen2", seed=4)
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    loaded_tokenizer = AutoTokenizer.from_pretrained(folder)
    assert loaded_tokenizer.chat_template == CHAT_TEMPLATE
    ids = loaded_tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    assert ids == tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True)
    batch = torch.tensor([ids["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(loaded(batch).logits, model(batch).logits)
