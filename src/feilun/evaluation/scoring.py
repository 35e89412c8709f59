"""Option log-likelihoods from a local causal LM, batched, one forward pass per shared prefix.

Requests are `(context, continuations)`. Tokenisation follows lm-evaluation-harness: the
continuation's tokens are those of `context + continuation` past the context's own tokens
(trailing spaces of the context move to the continuation), so scores compare item by item.
When every continuation of a context is one token (MMLU's " A" … " D"), the context is run
once and all options are read off its last position; otherwise each option is one row.
Rows are sorted by length and left-padded into batches; only the positions scored get logits.

This module drives the tensors the loaded model and tokenizer return and never imports torch
itself (the layer contract keeps torch in `models`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from feilun.core import registry as plugins

logger = logging.getLogger(__name__)

Request = tuple[str, Sequence[str]]
DEFAULT_BATCH_SIZE = 16


class LoglikelihoodScorer(Protocol):
    """Scores continuations of a context by their summed token log-probabilities."""

    name: str

    def loglikelihoods(
        self, requests: Sequence[Request], progress: Callable[[int], None] | None = None
    ) -> list[list[float]]:
        """For each `(context, continuations)`, log P(continuation | context) per option."""
        ...


@dataclass
class _Row:
    """One forward pass input and the (request, option, target tokens) it scores."""

    inputs: list[int]
    targets: list[tuple[int, int, list[int]]]


class HfScorer:
    """Log-likelihoods from a transformers causal LM and its tokenizer (our own loaded copy)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_length: int | None = None,
    ) -> None:
        self.name = name
        self.batch_size = batch_size
        # The scorer owns this copy of the weights: no autograd graph, no dropout.
        self._model = model.requires_grad_(False).eval()
        self._tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        configured: int = getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(max_length or configured)

    def _encode(self, text: str) -> list[int]:
        return [int(i) for i in self._tokenizer.encode(text, add_special_tokens=False)]

    def _rows(self, requests: Sequence[Request]) -> list[_Row]:
        rows: list[_Row] = []
        for r, (context, continuations) in enumerate(requests):
            stripped = context.rstrip(" ")
            moved = context[len(stripped) :]
            context_ids = self._encode(stripped)
            targets = []
            for o, continuation in enumerate(continuations):
                whole = self._encode(stripped + moved + continuation)
                targets.append((r, o, whole[len(context_ids) :] or whole[-1:]))
            if all(len(t[2]) == 1 for t in targets):
                rows.append(_Row(context_ids, targets))
            else:
                for target in targets:
                    rows.append(_Row((context_ids + target[2])[:-1], [target]))
        return rows

    def loglikelihoods(
        self, requests: Sequence[Request], progress: Callable[[int], None] | None = None
    ) -> list[list[float]]:
        """For each `(context, continuations)`, log P(continuation | context) per option."""
        scores = [[0.0] * len(continuations) for _, continuations in requests]
        rows = sorted(self._rows(requests), key=lambda row: -len(row.inputs))
        done: set[int] = set()
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            for row, values in zip(batch, self._score_batch(batch), strict=True):
                for (r, o, _), value in zip(row.targets, values, strict=True):
                    scores[r][o] = value
                    done.add(r)
            if progress is not None:
                progress(len(done))
        return scores

    def _score_batch(self, batch: Sequence[_Row]) -> list[list[float]]:
        """Summed log-probabilities of each row's targets; left padding aligns the ends."""
        limit = self.max_length
        inputs = [row.inputs[-limit:] for row in batch]
        keep = max(len(t[2]) for row in batch for t in row.targets)
        encoded = self._tokenizer.pad(
            {"input_ids": inputs}, padding=True, return_tensors="pt", padding_side="left"
        )
        mask = encoded["attention_mask"]  # (B, T)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): pads do not shift positions
        out = self._model(
            input_ids=encoded["input_ids"],
            attention_mask=mask,
            position_ids=positions,
            logits_to_keep=keep,
        )
        logprobs = out.logits.float().log_softmax(-1)  # (B, keep, V)
        results: list[list[float]] = []
        for b, row in enumerate(batch):
            values = []
            for _, _, tokens in row.targets:
                if len(row.targets) > 1:  # shared prefix: options read at the last position
                    picked = logprobs[b, keep - 1, tokens[0]]
                else:
                    span = list(range(keep - len(tokens), keep))
                    picked = logprobs[b, span, tokens].sum()
                values.append(float(picked.item()))
            results.append(values)
        return results


def open_scorer(models: Any, ref: str, batch_size: int = DEFAULT_BATCH_SIZE) -> HfScorer | None:
    """A scorer over a fresh copy of a registered local model's weights; None for endpoints.

    `models` is the workspace's ModelRegistry. Adapters are merged into their base weights.
    """
    resolved = models.resolve(ref)
    # Registries given the artifact store restore an adapter's stored files first.
    with_files = getattr(models, "with_files", None)
    if resolved.adapter is not None and with_files is not None:
        resolved = with_files(resolved)
    base = resolved.base
    if base.runtime != "transformers":
        return None
    source = plugins.lookup("model_sources", base.source)
    model, tokenizer = source.load(base.location, models.cache_dir)
    if resolved.adapter is not None:
        from feilun.models.merge import merge_adapter

        model = merge_adapter(model, resolved.adapter)
    logger.info("scoring options of %s by log-likelihood", resolved.ref)
    return HfScorer(
        model,
        tokenizer,
        name=resolved.ref,
        batch_size=batch_size,
        max_length=base.context_length or None,
    )
