"""Losses computed only where there are labels.

The vocabulary projection is the largest matmul of a small model (49k × 576 for SmolLM2), so
hidden states are gathered at labelled positions first and projected there alone: prompt and
padding tokens cost no logits at all.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (PyTorch's own convention)

from feilun.training.collate import IGNORE, collate


def causal_lm(model: Any) -> Any:
    """The transformers causal LM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _targets(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (N, V) at the N labelled positions and their labels (N,); row of each in `rows`."""
    lm = causal_lm(model)
    backbone = getattr(lm, lm.base_model_prefix)
    hidden = backbone(
        input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
    ).last_hidden_state  # (B, T, H)
    labels = batch["labels"][:, 1:]  # (B, T-1): position t predicts token t+1
    keep = labels != IGNORE  # (B, T-1)
    logits = lm.get_output_embeddings()(hidden[:, :-1][keep])  # (N, V)
    return logits.float(), labels[keep]  # (N, V), (N,)


def token_loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy over the labelled tokens of `batch` (divide by the token count)."""
    logits, labels = _targets(model, batch)
    return F.cross_entropy(logits, labels, reduction="sum")


def sequence_logprobs(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of label log-probabilities per row, (B,): the policy score DPO compares."""
    logits, labels = _targets(model, batch)
    picked = logits.log_softmax(-1).gather(-1, labels[:, None])[:, 0]  # (N,)
    keep = batch["labels"][:, 1:] != IGNORE  # (B, T-1)
    rows = torch.arange(keep.shape[0], device=keep.device)[:, None].expand_as(keep)[keep]  # (N,)
    return torch.zeros(keep.shape[0], dtype=picked.dtype, device=picked.device).index_add(
        0, rows, picked
    )  # (B,)


def count_targets(batch: dict[str, torch.Tensor]) -> int:
    """Labelled tokens in `batch` (those `token_loss_sum` sums over)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def mean_loss(
    model: Any, sequences: list[Any], micro_batch_size: int, pad_id: int, device: torch.device
) -> float:
    """Mean token loss over `sequences` (a validation split), without dropout or gradients."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(sequences), micro_batch_size):
            batch = collate(sequences[start : start + micro_batch_size], pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            total += float(token_loss_sum(model, batch))
            count += count_targets(batch)
    model.train(was_training)
    return total / max(count, 1)
