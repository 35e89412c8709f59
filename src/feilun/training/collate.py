"""Dataset rows → token sequences with labels → padded batches.

Chat rows are rendered with the chat template and labelled only on assistant turns: the
character span of each assistant turn is found by rendering the conversation up to it, and
tokens starting inside a span keep their id as label; all others get IGNORE. Rows that cannot
be used are counted by reason, never silently dropped.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from feilun.core.errors import ConfigError

IGNORE = -100  # label of a token the loss skips (PyTorch's cross-entropy ignore_index)
Overlong = Literal["truncate", "skip"]


@dataclass(frozen=True)
class Tokens:
    """One training sequence: ids, labels (IGNORE where no loss) and position ids."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]

    @property
    def target_count(self) -> int:
        """Tokens that carry loss (the first token is never predicted)."""
        return sum(label != IGNORE for label in self.labels[1:])


@dataclass
class DataStats:
    """What happened to the rows on their way to sequences."""

    rows: int = 0
    kept: int = 0
    truncated: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    tokens: int = 0
    target_tokens: int = 0

    def to_json(self) -> dict[str, Any]:
        """A plain dict for manifests and `--json`."""
        return {
            "rows": self.rows,
            "kept": self.kept,
            "truncated": self.truncated,
            "skipped": dict(sorted(self.skipped.items())),
            "tokens": self.tokens,
            "target_tokens": self.target_tokens,
        }


def render_chat(tokenizer: Any, template: str, messages: list[dict[str, str]]) -> Tokens:
    """Tokenize a conversation; labels are the assistant turns (their content and end marker)."""

    def render(turns: list[dict[str, str]], add_generation_prompt: bool) -> str:
        return str(
            tokenizer.apply_chat_template(
                turns,
                chat_template=template,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
        )

    text = render(messages, False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = render(messages[:i], True), render(messages[: i + 1], False)
        if not (text.startswith(before) and text.startswith(through)):
            raise ConfigError(
                "the chat template renders a conversation differently from its beginning, so "
                "assistant turns cannot be located for the loss mask",
                "set `data.chat_template` in the recipe to a template that only appends "
                "(ChatML, as in SmolLM2-Instruct, works)",
            )
        spans.append((len(before), len(through)))
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [int(i) for i in encoded["input_ids"]]
    labels = [
        token if any(lo <= start < hi for lo, hi in spans) else IGNORE
        for token, (start, _end) in zip(ids, encoded["offset_mapping"], strict=True)
    ]
    return Tokens(ids, labels, list(range(len(ids))))


def tokenize_chat_rows(
    rows: Iterable[Any],
    tokenizer: Any,
    template: str,
    max_seq_len: int,
    overlong: Overlong,
) -> tuple[list[Tokens], DataStats]:
    """Chat rows (`{"messages": [...]}`) to labelled sequences, and what was skipped."""
    stats, out = DataStats(), list[Tokens]()
    for row in rows:
        stats.rows += 1
        messages = _messages_of(row)
        if messages is None:
            stats.skipped["malformed"] += 1
            continue
        if not any(m["role"] == "assistant" for m in messages):
            stats.skipped["no_assistant_turn"] += 1
            continue
        tokens = _fit(render_chat(tokenizer, template, messages), max_seq_len, overlong, stats)
        if tokens is not None:
            _keep(tokens, out, stats)
    return out, stats


def tokenize_text_rows(
    rows: Iterable[Any], tokenizer: Any, max_seq_len: int
) -> tuple[list[Tokens], DataStats]:
    """Raw text rows (`{"text": ...}`) as one stream, EOS between rows, cut into full blocks."""
    stats, stream = DataStats(), list[int]()
    for row in rows:
        stats.rows += 1
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str) or not text.strip():
            stats.skipped["malformed" if not isinstance(text, str) else "empty_text"] += 1
            continue
        stats.kept += 1
        stream += tokenizer(text, add_special_tokens=False)["input_ids"]
        stream.append(tokenizer.eos_token_id)
    out: list[Tokens] = []
    for start in range(0, len(stream) - 1, max_seq_len):
        block = stream[start : start + max_seq_len]
        out.append(Tokens(block, list(block), list(range(len(block)))))
        stats.tokens += len(block)
        stats.target_tokens += len(block) - 1
    return out, stats


def tokenize_preference_rows(
    rows: Iterable[Any],
    tokenizer: Any,
    template: str,
    max_seq_len: int,
    overlong: Overlong,
) -> tuple[list[tuple[Tokens, Tokens]], DataStats]:
    """Preference rows (`prompt`, `chosen`, `rejected`) to (chosen, rejected) sequence pairs."""
    stats, out = DataStats(), list[tuple[Tokens, Tokens]]()

    def answered(prompt: str, answer: str) -> Tokens | None:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        return _fit(render_chat(tokenizer, template, messages), max_seq_len, overlong, stats)

    for row in rows:
        stats.rows += 1
        fields = [row.get(k) if isinstance(row, dict) else None for k in _PREFERENCE_KEYS]
        if not all(isinstance(f, str) and f.strip() for f in fields):
            stats.skipped["malformed"] += 1
            continue
        prompt, chosen, rejected = (str(f) for f in fields)
        pair = (answered(prompt, chosen), answered(prompt, rejected))
        if pair[0] is None or pair[1] is None:
            continue
        stats.kept += 1
        stats.tokens += len(pair[0].input_ids) + len(pair[1].input_ids)
        stats.target_tokens += pair[0].target_count + pair[1].target_count
        out.append((pair[0], pair[1]))
    return out, stats


_PREFERENCE_KEYS = ("prompt", "chosen", "rejected")


def _messages_of(row: Any) -> list[dict[str, str]] | None:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        return None
    roles = {"system", "user", "assistant", "tool"}
    for m in messages:
        if not (
            isinstance(m, dict) and m.get("role") in roles and isinstance(m.get("content"), str)
        ):
            return None
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _fit(tokens: Tokens, max_seq_len: int, overlong: Overlong, stats: DataStats) -> Tokens | None:
    """`tokens` cut to `max_seq_len` (or None when skipped), counting what happened."""
    if len(tokens.input_ids) > max_seq_len:
        if overlong == "skip":
            stats.skipped["too_long"] += 1
            return None
        stats.truncated += 1
        tokens = Tokens(
            tokens.input_ids[:max_seq_len],
            tokens.labels[:max_seq_len],
            tokens.position_ids[:max_seq_len],
        )
    if tokens.target_count == 0:
        stats.skipped["no_target_after_truncation"] += 1
        return None
    return tokens


def _keep(tokens: Tokens, out: list[Tokens], stats: DataStats) -> None:
    out.append(tokens)
    stats.kept += 1
    stats.tokens += len(tokens.input_ids)
    stats.target_tokens += tokens.target_count


def require_examples(examples: Sequence[Any], stats: DataStats, source: str) -> None:
    """Refuse to train on nothing, saying what the rows lacked."""
    if examples:
        return
    skipped = ", ".join(f"{n} {why}" for why, n in stats.skipped.most_common()) or "none"
    raise ConfigError(
        f"dataset {source} leaves no training examples: {stats.rows} rows, skipped: {skipped}",
        "chat rows need `messages` with an assistant turn (preference rows `prompt`, `chosen`, "
        "`rejected`; text rows `text`); raise data.max_seq_len or set data.overlong=truncate "
        "for long rows, or lower data.val_fraction for a tiny dataset",
    )


def split_validation(
    items: Sequence[Any], fraction: float, seed: int
) -> tuple[list[Any], list[Any]]:
    """A seeded split: (train, validation); validation is empty when fraction is 0."""
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_val = round(len(items) * fraction) if fraction > 0 and len(items) > 1 else 0
    n_val = min(n_val, len(items) - 1)
    held = set(order[:n_val])
    return [x for i, x in enumerate(items) if i not in held], [items[i] for i in sorted(held)]


def pack(sequences: Iterable[Tokens], max_seq_len: int) -> list[Tokens]:
    """Greedy packing in order: whole sequences share a row; position ids restart per piece.

    The model then attends within each piece only (transformers reads the restarts from the
    position ids when no attention mask is given); the first token of a piece carries no label.
    """
    rows: list[Tokens] = []
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for seq in sequences:
        if ids and len(ids) + len(seq.input_ids) > max_seq_len:
            rows.append(Tokens(ids, labels, positions))
            ids, labels, positions = [], [], []
        ids += seq.input_ids
        labels += [IGNORE, *seq.labels[1:]]
        positions += seq.position_ids
    if ids:
        rows.append(Tokens(ids, labels, positions))
    return rows


def collate(sequences: Sequence[Tokens], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors `input_ids`, `labels`, `position_ids`, each (B, T).

    No attention mask is needed: attention is causal, so real tokens never see the padding
    after them, and padded positions carry no label.
    """
    import torch

    width = max(len(s.input_ids) for s in sequences)
    ids, labels, positions = [], [], []
    for s in sequences:
        pad = width - len(s.input_ids)
        ids.append(s.input_ids + [pad_id] * pad)
        labels.append(s.labels + [IGNORE] * pad)
        last = s.position_ids[-1] + 1 if s.position_ids else 0
        positions.append(s.position_ids + list(range(last, last + pad)))
    return {
        "input_ids": torch.tensor(ids),  # (B, T)
        "labels": torch.tensor(labels),  # (B, T)
        "position_ids": torch.tensor(positions),  # (B, T)
    }
