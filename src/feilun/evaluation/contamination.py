"""Contamination check: n-gram overlap between evaluation items and training datasets.

Text is cut into tokens the way CMRC 2018 segments it (each Chinese character one token,
other runs words; lowercased, punctuation dropped), and an item is flagged when any of its
n-grams (13 by default, as GPT-3's check used) occurs in a dataset; an item shorter than n
tokens is flagged when all of it occurs. Datasets are the ones named, plus those in the
evaluated adapter's lineage. Scores are then reported with and without flagged items.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from feilun.core.records import Dataset
from feilun.evaluation.metrics import bootstrap_interval, segment_mixed
from feilun.store.catalog import resolve_version

if TYPE_CHECKING:
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

NGRAM = 13


def tokens_of(text: str) -> list[str]:
    """Lowercased mixed-segmentation tokens without punctuation."""
    return segment_mixed(text, drop_punctuation=True)


def _hash(gram: Sequence[str]) -> bytes:
    return hashlib.blake2b("\x1f".join(gram).encode(), digest_size=8).digest()


def _grams(tokens: Sequence[str], n: int) -> Iterator[bytes]:
    for start in range(len(tokens) - n + 1):
        yield _hash(tokens[start : start + n])


def row_texts(row: dict[str, Any]) -> Iterator[str]:
    """The texts of a dataset row: `text`, chat `messages`, or prompt/chosen/rejected."""
    for key in ("text", "prompt", "chosen", "rejected", "question", "context"):
        if isinstance(row.get(key), str):
            yield row[key]
    for message in row.get("messages") or []:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            yield message["content"]


def find_contaminated(items: dict[str, str], texts: Iterable[str], n: int = NGRAM) -> set[str]:
    """Ids of the items sharing an n-gram with any of `texts` (short items: all of them).

    The items are indexed (few) and the training texts streamed past them (many), so memory
    stays the size of the evaluation set.
    """
    by_gram: dict[bytes, set[str]] = {}
    sizes: set[int] = set()
    for item_id, text in items.items():
        tokens = tokens_of(text)
        if not tokens:
            continue
        size = min(n, len(tokens))
        sizes.add(size)
        for gram in _grams(tokens, size):
            by_gram.setdefault(gram, set()).add(item_id)
    found: set[str] = set()
    for text in texts:
        tokens = tokens_of(text)
        for size in sizes:
            for gram in _grams(tokens, size):
                found.update(by_gram.get(gram, ()))
    return found


def dataset_texts(
    catalog: SqlCatalog, artifacts: ArtifactStore, refs: Iterable[str]
) -> tuple[list[str], Iterator[str]]:
    """The pinned `name@version` of each named dataset, and a stream of their rows' texts."""
    hint = "list them with `feilun data list`"
    datasets = [
        cast(Dataset, resolve_version(catalog, "dataset", ref, noun="dataset", hint=hint))
        for ref in dict.fromkeys(refs)
    ]

    def stream() -> Iterator[str]:
        for dataset in datasets:
            with artifacts.open(dataset.artifact) as body:
                for line in body:
                    yield from row_texts(json.loads(line))

    return [d.ref for d in datasets], stream()


def clean_metrics(
    items: Sequence[dict[str, Any]], primary: str, seed: int
) -> dict[str, dict[str, float]]:
    """Each metric over the items not flagged `contaminated`, with its 95% interval."""
    kept = [i for i in items if not i.get("contaminated") and i.get("score") is not None]
    per_metric: dict[str, list[float]] = {}
    for item in kept:
        scores = item.get("scores") or {primary: item["score"]}
        for metric, value in scores.items():
            per_metric.setdefault(metric, []).append(float(value))
    return {m: bootstrap_interval(v, seed).to_json() for m, v in per_metric.items()}
