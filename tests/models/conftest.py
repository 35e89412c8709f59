"""Tiny-model fixtures for runtime tests: a random model and one trained to parrot an answer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from feilun.models.tiny import build_tiny_model

PARROT_QUESTION = "法国的首都是哪里？"
PARROT_ANSWER = "法国的首都是巴黎。The capital of France is Paris."


@pytest.fixture(scope="session")
def random_llama() -> tuple[Any, Any]:
    """An untrained tiny Llama whose greedy output is varied (large init)."""
    return build_tiny_model("llama", seed=1, init_std=0.3)


@pytest.fixture(scope="session")
def random_qwen2() -> tuple[Any, Any]:
    """An untrained tiny Qwen2 (q/k/v biases) whose greedy output is varied."""
    return build_tiny_model("qwen2", seed=2, init_std=0.3)


@pytest.fixture(scope="session")
def parrot() -> tuple[Any, Any]:
    """A tiny Llama trained to answer PARROT_QUESTION with PARROT_ANSWER (mixed zh/en)."""
    model, tokenizer = build_tiny_model("llama", seed=0)
    messages = [
        {"role": "user", "content": PARROT_QUESTION},
        {"role": "assistant", "content": PARROT_ANSWER},
    ]
    ids = torch.tensor([tokenizer.apply_chat_template(messages, return_dict=False)])  # (1, T)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(80):
        model(ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model, tokenizer
