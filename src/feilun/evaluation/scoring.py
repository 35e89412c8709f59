"""Option log-likelihoods from a local causal LM, batched, one forward pass per shared prefix.

Requests are `(context, continuations)`. Tokenisation follows lm-evaluation-harness: the
continuation's tokens are those of `context + continuation` past the context's own tokens
(trailing spaces of the context move to the continuation), so scores compare item by item.
When every continuation of a context is one token (MMLU's " A" … " D"), the context is run
once and all options are read off its last position; otherwise each option is one row.
Rows sharing a long token prefix (a subject's description and few-shot examples) are batched
together and the prefix is run once per batch, its KV cache reused by every row; other rows
batch by length. Rows are right-padded (causal attention never looks ahead, so pads need no
mask) and only the positions scored get logits.

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
GROUP_TOKENS = 64  # rows sharing this many leading tokens go into batches of their own
MIN_SHARED_TOKENS = 16  # a batch's common prefix at least this long runs once, as a KV cache


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
        done: set[int] = set()
        for batch in _batches(self._rows(requests), self.batch_size):
            for row, values in zip(batch, self._score_batch(batch), strict=True):
                for (r, o, _), value in zip(row.targets, values, strict=True):
                    scores[r][o] = value
                    done.add(r)
            if progress is not None:
                progress(len(done))
        return scores

    def _score_batch(self, batch: Sequence[_Row]) -> list[list[float]]:
        """Summed log-probabilities of each row's targets, the batch's common prefix run once."""
        limit = self.max_length
        inputs = [row.inputs[-limit:] for row in batch]
        counts = [_scored(row) for row in batch]
        shared = 0
        if all(len(row.inputs) <= limit for row in batch):
            # the prefix ends before every row's first scored position
            ends = [len(ids) - n for ids, n in zip(inputs, counts, strict=True)]
            shared = min([_common_prefix(inputs), *ends])
        cache = None
        if shared >= MIN_SHARED_TOKENS and len(batch) > 1:  # one row: nothing to share
            prefix = self._tensor([inputs[0][:shared]])  # (1, P)
            cache = self._model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(len(batch))
        else:
            shared = 0
        suffixes = [ids[shared:] for ids in inputs]
        ids = self._tensor(suffixes)  # (B, T), right-padded
        wanted = [list(range(len(s) - n, len(s))) for s, n in zip(suffixes, counts, strict=True)]
        width = max(counts)
        keep = ids.new_tensor([w + w[-1:] * (width - len(w)) for w in wanted])  # (B, K)
        out = self._model(
            input_ids=ids, past_key_values=cache, use_cache=cache is not None, logits_to_keep=keep
        )
        logprobs = out.logits.float().log_softmax(-1)  # (B, K, V)
        results: list[list[float]] = []
        for b, row in enumerate(batch):
            values = []
            for _, _, tokens in row.targets:
                if len(row.targets) > 1:  # shared context: options read at its last position
                    picked = logprobs[b, 0, tokens[0]]
                else:
                    picked = logprobs[b, list(range(len(tokens))), tokens].sum()
                values.append(float(picked.item()))
            results.append(values)
        return results

    def _tensor(self, rows: list[list[int]]) -> Any:
        """Token rows as one right-padded id tensor (the tokenizer makes it: no torch import)."""
        encoded = self._tokenizer.pad(
            {"input_ids": rows}, padding=True, return_tensors="pt", padding_side="right"
        )
        return encoded["input_ids"]


def _scored(row: _Row) -> int:
    """How many final positions of a row are scored: 1 for shared options, else the target's."""
    return 1 if len(row.targets) > 1 else len(row.targets[0][2])


def _common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every row starts with."""
    first, n = rows[0], min(len(r) for r in rows)
    for k in range(n):
        if any(r[k] != first[k] for r in rows):
            return k
    return n


def _batches(rows: list[_Row], batch_size: int) -> list[list[_Row]]:
    """Rows sharing at least GROUP_TOKENS leading tokens batch together, the rest by length."""
    groups: list[list[_Row]] = []
    for row in sorted(rows, key=lambda row: row.inputs):
        if groups and _common_prefix([groups[-1][0].inputs, row.inputs]) >= GROUP_TOKENS:
            groups[-1].append(row)
        else:
            groups.append([row])
    loose = [group[0] for group in groups if len(group) == 1]
    batches = []
    for group in [group for group in groups if len(group) > 1] + [loose]:
        group.sort(key=lambda row: -len(row.inputs))  # longest first: the batch pads to it
        batches += [group[i : i + batch_size] for i in range(0, len(group), batch_size)]
    return batches


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
