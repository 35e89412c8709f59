"""The classifier layer: softmax regression over character n-grams, for Chinese and English.

Character n-grams need no word segmentation, so one model reads both languages. Training
uses numpy (imported inside `train_classifier`); prediction is plain Python over a dict of
n-gram weights, so a server needs no numpy. A model is one JSON file written atomically.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feilun.core.errors import ArtifactError, BackendUnavailable, BadInput, ConfigError
from feilun.core.files import write_atomically
from feilun.governance.lexicon import fold_case
from feilun.governance.taxonomy import resolve_risk

FORMAT = "feilun-safety-classifier/1"
NGRAM_SIZES = (1, 2, 3)
MAX_TEXT_CHARS = 2000


def ngrams(text: str) -> set[str]:
    """The distinct character 1- to 3-grams of `text` (case-folded, spaces squeezed)."""
    folded = " ".join(fold_case(text[:MAX_TEXT_CHARS]).split())
    return {folded[i : i + n] for n in NGRAM_SIZES for i in range(len(folded) - n + 1)}


@dataclass
class Classifier:
    """A trained model: labels, the risk each non-benign label stands for, n-gram weights."""

    labels: list[str]
    benign_label: str
    categories: dict[str, str]  # label -> risk id
    weights: dict[str, list[float]]  # n-gram -> one weight per label
    bias: list[float]
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, text: str) -> list[float]:
        """Probability of each label (in `labels` order)."""
        grams = ngrams(text)
        scale = 1 / math.sqrt(len(grams)) if grams else 0.0
        scores = list(self.bias)
        for gram in grams:
            row = self.weights.get(gram)
            if row is not None:
                for k, w in enumerate(row):
                    scores[k] += w * scale
        top = max(scores)
        exp = [math.exp(s - top) for s in scores]
        total = sum(exp)
        return [e / total for e in exp]

    def predict(self, text: str) -> tuple[str | None, float]:
        """The risk id of the likeliest unsafe label and the probability that text is unsafe."""
        probs = self.probabilities(text)
        benign = self.labels.index(self.benign_label)
        unsafe = [(p, k) for k, p in enumerate(probs) if k != benign]
        if not unsafe:
            return None, 0.0
        _, best = max(unsafe)
        return self.categories[self.labels[best]], 1.0 - probs[benign]

    def save(self, path: Path) -> None:
        """Write the model as JSON, atomically."""
        values = {
            "format": FORMAT,
            "labels": self.labels,
            "benign_label": self.benign_label,
            "categories": self.categories,
            "bias": self.bias,
            "metrics": self.metrics,
            "source": self.source,
            "weights": self.weights,
        }
        write_atomically(path, json.dumps(values, ensure_ascii=False, separators=(",", ":")))


def load_classifier(path: Path | str) -> Classifier:
    """A model saved by `Classifier.save`; ArtifactError when it is not one."""
    path = Path(path).expanduser()
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(
            f"cannot read the safety classifier {str(path)!r}: {e}",
            "train one with `feilun safety train --file F.jsonl`",
        ) from e
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        raise ArtifactError(
            f"{path} is not a Feilun safety classifier (format {FORMAT!r})",
            "train one with `feilun safety train --file F.jsonl`",
        )
    return Classifier(
        labels=values["labels"],
        benign_label=values["benign_label"],
        categories=values["categories"],
        weights=values["weights"],
        bias=values["bias"],
        metrics=values.get("metrics", {}),
        source=values.get("source", {}),
    )


def read_examples(path: Path, text_field: str, label_field: str) -> list[tuple[str, str]]:
    """(text, label) rows of a JSONL file; BadInput naming the line of a bad row."""
    rows: list[tuple[str, str]] = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {str(path)!r}: {e}", "give a UTF-8 JSONL file") from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, label = row[text_field], row[label_field]
        except (ValueError, KeyError, TypeError) as e:
            raise BadInput(
                f"{path}:{number}: not a JSON object with {text_field!r} and {label_field!r}",
                "fix the row, or name the fields with --text-field and --label-field",
            ) from e
        if isinstance(text, str) and text.strip():
            rows.append((text, str(label)))
    return rows


def train_classifier(
    examples: Sequence[tuple[str, str]],
    benign_label: str,
    category: str = "other_prohibited",
    epochs: int = 100,
    l2: float = 1e-4,
    min_count: int = 2,
    holdout: float = 0.1,
    seed: int = 0,
) -> Classifier:
    """Fit softmax regression on (text, label) pairs; metrics come from a held-out share.

    Labels that name a TC260 risk stand for it; any other unsafe label stands for `category`.
    """
    try:
        import numpy as np
    except ImportError as e:
        raise BackendUnavailable(
            "training the safety classifier needs numpy, which is not installed",
            "pip install 'feilun[data]' (or numpy); using a trained model does not need it",
        ) from e

    labels = sorted({label for _, label in examples})
    if benign_label not in labels or len(labels) < 2:
        raise ConfigError(
            f"training needs the benign label {benign_label!r} and at least one other; "
            f"the file has {labels}",
            "name the benign label with --benign-label",
        )
    default = resolve_risk(category, where="--category")
    categories = {k: _risk_or(k, default) for k in labels if k != benign_label}
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = int(len(order) * holdout) if len(order) >= 20 else 0
    test, train = order[:n_test], order[n_test:]
    grams = [ngrams(examples[i][0]) for i in range(len(examples))]
    counts = Counter(g for i in train for g in grams[i])
    vocab = {g: j for j, g in enumerate(sorted(g for g, c in counts.items() if c >= min_count))}
    label_index = {k: i for i, k in enumerate(labels)}

    def matrix(rows: list[int]) -> tuple[Any, Any, Any]:
        indices, values, lengths = [], [], []
        for i in rows:
            known = [vocab[g] for g in grams[i] if g in vocab]
            scale = 1 / math.sqrt(len(grams[i])) if grams[i] else 0.0
            indices += known
            values += [scale] * len(known)
            lengths.append(len(known))
        return np.array(indices, dtype=np.int64), np.array(values), np.array(lengths)

    idx, val, lengths = matrix(train)
    rows = np.repeat(np.arange(len(train)), lengths)  # (nnz,)
    y = np.array([label_index[examples[i][1]] for i in train])  # (N,)
    n, k, v = len(train), len(labels), len(vocab)
    w, b = np.zeros((v, k)), np.zeros(k)
    m_w, s_w, m_b, s_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    onehot = np.eye(k)[y]  # (N, K)
    balance = (n / (k * np.bincount(y, minlength=k)))[y][:, None]  # (N, 1) class-balanced
    for step in range(1, epochs + 1):
        scores = (
            np.stack(
                [np.bincount(rows, weights=w[idx, c] * val, minlength=n) for c in range(k)], axis=1
            ).astype(float)
            + b
        )  # (N, K)
        scores -= scores.max(axis=1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=1, keepdims=True)
        err = balance * (probs - onehot) / n  # (N, K)
        per_nnz = err[rows] * val[:, None]  # (nnz, K)
        grad_w = (
            np.stack(
                [np.bincount(idx, weights=per_nnz[:, c], minlength=v) for c in range(k)], axis=1
            ).astype(float)
            + l2 * w
        )  # (V, K)
        grad_b = err.sum(axis=0)
        for p, g, m, s in ((w, grad_w, m_w, s_w), (b, grad_b, m_b, s_b)):  # Adam, lr 0.1
            m *= 0.9
            m += 0.1 * g
            s *= 0.999
            s += 0.001 * g * g
            p -= 0.1 * (m / (1 - 0.9**step)) / (np.sqrt(s / (1 - 0.999**step)) + 1e-8)
    grams_by_index = sorted(vocab, key=vocab.__getitem__)
    weights = {
        g: [round(float(x), 4) for x in w[j]]
        for j, g in enumerate(grams_by_index)
        if np.abs(w[j]).max() >= 1e-3
    }
    model = Classifier(labels, benign_label, categories, weights, [float(x) for x in b])
    model.metrics = _holdout_metrics(model, [examples[i] for i in test])
    model.metrics.update(train_rows=len(train), features=len(weights))
    return model


def _risk_or(label: str, default: str) -> str:
    try:
        return resolve_risk(label)
    except ConfigError:
        return default


def _holdout_metrics(model: Classifier, rows: list[tuple[str, str]]) -> dict[str, Any]:
    if not rows:
        return {"holdout_rows": 0}
    correct = caught = unsafe = false_alarms = benign = 0
    for text, label in rows:
        probs = model.probabilities(text)
        predicted = model.labels[max(range(len(probs)), key=probs.__getitem__)]
        correct += predicted == label
        is_flagged = 1.0 - probs[model.labels.index(model.benign_label)] >= 0.5
        if label == model.benign_label:
            benign += 1
            false_alarms += is_flagged
        else:
            unsafe += 1
            caught += is_flagged
    return {
        "holdout_rows": len(rows),
        "accuracy": round(correct / len(rows), 4),
        "unsafe_recall": round(caught / unsafe, 4) if unsafe else None,
        "benign_false_positive_rate": round(false_alarms / benign, 4) if benign else None,
    }


def file_sha256(path: Path) -> str:
    """The sha256 of a file, recorded as the model's training input."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
