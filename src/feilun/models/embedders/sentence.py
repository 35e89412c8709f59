"""Sentence-transformers-style embedding folders (all-MiniLM-L6-v2 and kin) with plain transformers.

A folder holds a BERT-like encoder (`config.json`, weights, tokenizer) and `1_Pooling/config.json`
naming the pooling. Vectors are pooled over real tokens only (padding masked out) and always
L2-normalised, so the same text gives the same vector alone or in a batch. A small batch (a
query) runs on one intra-op thread: see `_threads`.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from feilun.core.errors import ArtifactError

logger = logging.getLogger(__name__)

POOLING_MODES = ("mean_tokens", "cls_token", "max_tokens", "mean_sqrt_len_tokens")
DEFAULT_MAX_SEQ_LENGTH = 256
DEFAULT_BATCH_SIZE = 32
SINGLE_THREAD_TEXTS = 8  # batches of up to this many texts run on one thread


class SentenceEmbedder:
    """Turns texts into L2-normalised vectors with a sentence-transformers model folder."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        pooling: str = "mean_tokens",
        max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
        do_lower_case: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if pooling not in POOLING_MODES:
            raise ArtifactError(
                f"pooling {pooling!r} of embedder {name!r} is not supported",
                fix=f"use one of {', '.join(POOLING_MODES)}",
            )
        self.name = name
        self.dimension = int(model.config.hidden_size)
        self.pooling = pooling
        self.max_seq_length = max_seq_length
        self.do_lower_case = do_lower_case
        self.batch_size = batch_size
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text, in order."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._encode(texts[start : start + self.batch_size])
            vectors.extend(self._pool(batch).tolist())
        return vectors

    def count_tokens(self, texts: Sequence[str]) -> int:
        """Tokens the encoder reads for these texts (special tokens included, after truncation)."""
        encoded = self._tokenizer(
            [self._prepare(t) for t in texts], truncation=True, max_length=self.max_seq_length
        )
        return sum(len(ids) for ids in encoded["input_ids"])

    def _prepare(self, text: str) -> str:
        return text.lower() if self.do_lower_case else text

    def _encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return dict(
            self._tokenizer(
                [self._prepare(t) for t in texts],
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="pt",
            )
        )

    def _pool(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled, normalised vectors (B, H) of one tokenised batch."""
        mask = batch["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
        is_small = mask.shape[0] <= SINGLE_THREAD_TEXTS
        with self._lock, torch.inference_mode(), _threads(1 if is_small else None):
            hidden = self._model(**batch).last_hidden_state  # (B, T, H)
        if self.pooling == "cls_token":
            pooled = hidden[:, 0]
        elif self.pooling == "max_tokens":
            pooled = hidden.masked_fill(mask == 0, float("-inf")).max(dim=1).values
        else:
            summed = (hidden * mask).sum(dim=1)  # (B, H)
            counts = mask.sum(dim=1).clamp(min=1e-9)  # (B, 1)
            pooled = summed / (counts.sqrt() if self.pooling == "mean_sqrt_len_tokens" else counts)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)


@contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """The calling thread's torch intra-op threads set to `count` for the block (None: as is).

    A query is a batch of one, a few milliseconds of work per layer: with torch's default two
    OpenMP threads on a busy 2-core machine, every layer waits for a descheduled sibling
    (one MiniLM query: 500-960 ms on 2 threads, 45-72 ms on 1). Bulk batches keep the default.
    """
    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot read {path}: {e}", fix="reinstall the model folder") from e
    return data if isinstance(data, dict) else {}


def pooling_mode(folder: Path) -> str:
    """The pooling `1_Pooling/config.json` asks for (mean pooling when the file is absent)."""
    config = _read_json(folder / "1_Pooling" / "config.json")
    chosen = [m for m in POOLING_MODES if config.get(f"pooling_mode_{m}")]
    if len(chosen) > 1:
        raise ArtifactError(
            f"{folder}/1_Pooling/config.json enables several poolings: {', '.join(chosen)}",
            fix="enable exactly one pooling mode",
        )
    return chosen[0] if chosen else "mean_tokens"


def load_embedder(folder: Path | str, *, name: str | None = None) -> SentenceEmbedder:
    """Entry point of the "sentence" embedder: load a sentence-transformers model folder."""
    from transformers import AutoModel, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").exists():
        raise ArtifactError(
            f"{folder} is not a sentence-transformers model folder (no config.json)",
            fix="point at the folder holding config.json, the weights and the tokenizer",
        )
    options = _read_json(folder / "sentence_bert_config.json")
    model = AutoModel.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    logger.info("loaded embedder %s from %s", name or folder.name, folder)
    return SentenceEmbedder(
        model,
        tokenizer,
        name=name or folder.name,
        pooling=pooling_mode(folder),
        max_seq_length=int(options.get("max_seq_length") or DEFAULT_MAX_SEQ_LENGTH),
        do_lower_case=bool(options.get("do_lower_case", False)),
    )
