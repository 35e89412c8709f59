"""The classifier layer: softmax regression over tf-idf n-grams, for Chinese and English.

Features: char 1–4-grams and word uni/bigrams (jieba), sublinear tf-idf, L2-normalised. Each
language's decision threshold is picked on out-of-fold scores for a target false-refusal rate
and saved with the model. Training needs numpy; prediction is plain Python (and jieba).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from feilun.core.errors import ArtifactError, BackendUnavailable, BadInput, ConfigError
from feilun.core.files import write_atomically
from feilun.governance.lexicon import fold_case
from feilun.governance.moderation import detect_language
from feilun.governance.taxonomy import resolve_risk

FORMAT = "feilun-safety-classifier/2"
CHAR_NGRAM_SIZES = (1, 2, 3, 4)
MAX_TEXT_CHARS = 2000
MIN_BENIGN_ROWS = 20  # fewer benign rows of a language: its threshold stays 0.5
#: Starts word features; folded text has no two spaces in a row, so no char n-gram can.
WORD_MARK = "  "
_WORD_CHAR = re.compile(r"\w")
_jieba: Any = None
_jieba_lock = threading.Lock()
_TRAIN_AGAIN = "train one with `feilun safety train --file F.jsonl`"


def features(text: str) -> Counter[str]:
    """Counts of the char 1- to 4-grams and word uni/bigrams of `text` (case-folded)."""
    folded = " ".join(fold_case(text[:MAX_TEXT_CHARS]).split())
    counts = Counter(
        folded[i : i + n] for n in CHAR_NGRAM_SIZES for i in range(len(folded) - n + 1)
    )
    words = [w for w in _segmenter().lcut(folded) if _WORD_CHAR.search(w)]
    counts.update(WORD_MARK + w for w in words)
    counts.update(f"{WORD_MARK}{a} {b}" for a, b in pairwise(words))
    return counts


def _segmenter() -> Any:
    """The jieba tokenizer, its dictionary loaded once (about a second)."""
    global _jieba
    if _jieba is not None:
        return _jieba
    with _jieba_lock:
        if _jieba is None:
            try:
                import jieba
            except ImportError as e:
                raise BackendUnavailable(
                    "the safety classifier segments words with jieba, which is not installed",
                    "pip install 'feilun[data]' (or jieba)",
                ) from e
            jieba.setLogLevel(logging.WARNING)
            jieba.dt.check_initialized()
            _jieba = jieba.dt
    return _jieba


def tfidf(counts: Counter[str], idf: dict[str, float]) -> dict[str, float]:
    """Sublinear tf times idf over the known features, L2-normalised."""
    values = {g: (1 + math.log(c)) * idf[g] for g, c in counts.items() if g in idf}
    norm = math.sqrt(sum(v * v for v in values.values()))
    return {g: v / norm for g, v in values.items()} if norm else {}


def log_odds(p: float) -> float:
    """log(p / (1 - p)), with p kept off 0 and 1."""
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


@dataclass
class Classifier:
    """A trained model: labels, each unsafe label's risk, weights, thresholds per language."""

    labels: list[str]
    benign_label: str
    categories: dict[str, str]  # label -> risk id
    weights: dict[str, list[float]]  # feature -> one weight per label
    bias: list[float]
    idf: dict[str, float]  # feature -> inverse document frequency (the vocabulary)
    thresholds: dict[str, float] = field(default_factory=dict)  # language -> P(unsafe) cut
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, text: str) -> list[float]:
        """Probability of each label (in `labels` order)."""
        # tfidf() and a dot product in one pass: normalise once at the end.
        sums = [0.0] * len(self.bias)
        square = 0.0
        for gram, count in features(text).items():
            idf = self.idf.get(gram)
            if idf is None:
                continue
            value = (1 + math.log(count)) * idf
            square += value * value
            row = self.weights.get(gram)
            if row is not None:
                for k, w in enumerate(row):
                    sums[k] += w * value
        norm = math.sqrt(square) or 1.0
        scores = [b + s / norm for b, s in zip(self.bias, sums, strict=True)]
        top = max(scores)
        exp = [math.exp(s - top) for s in scores]
        total = sum(exp)
        return [e / total for e in exp]

    def unsafe_probability(self, text: str) -> float:
        """P(unsafe): one minus the benign label's probability."""
        return 1.0 - self.probabilities(text)[self.labels.index(self.benign_label)]

    def predict(self, text: str, language: str | None = None) -> tuple[str | None, float]:
        """The risk of the likeliest unsafe label and the text's unsafe score.

        The score is P(unsafe) with its log-odds shifted so that the language's trained
        threshold lands on 0.5: a policy's `classifier_threshold` 0.5 is the trained operating
        point, higher is stricter. `language` (zh, en) is detected when not given.
        """
        probs = self.probabilities(text)
        benign = self.labels.index(self.benign_label)
        unsafe = [(p, k) for k, p in enumerate(probs) if k != benign]
        if not unsafe:
            return None, 0.0
        _, best = max(unsafe)
        threshold = self.thresholds.get(language or detect_language(text), 0.5)
        shifted = log_odds(1.0 - probs[benign]) - log_odds(threshold)
        return self.categories[self.labels[best]], 1 / (1 + math.exp(-shifted))

    def save(self, path: Path) -> None:
        """Write the model as JSON, atomically."""
        values = {
            "format": FORMAT,
            "labels": self.labels,
            "benign_label": self.benign_label,
            "categories": self.categories,
            "bias": self.bias,
            "thresholds": self.thresholds,
            "metrics": self.metrics,
            "source": self.source,
            "idf": self.idf,
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
            f"cannot read the safety classifier {str(path)!r}: {e}", _TRAIN_AGAIN
        ) from e
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        found = values.get("format") if isinstance(values, dict) else None
        raise ArtifactError(
            f"{path} is not a Feilun safety classifier (format {FORMAT!r}, found {found!r})",
            "train it again with `feilun safety train --file F.jsonl` (older formats are not read)",
        )
    return Classifier(
        labels=values["labels"],
        benign_label=values["benign_label"],
        categories=values["categories"],
        weights=values["weights"],
        bias=values["bias"],
        idf=values["idf"],
        thresholds=values.get("thresholds", {}),
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
    target_false_refusal: float | None = 0.05,
    folds: int = 5,
) -> Classifier:
    """Fit softmax regression on (text, label) pairs; metrics come from a held-out share.

    Labels that name a TC260 risk stand for it; any other unsafe label stands for `category`.
    With `target_false_refusal`, each language's threshold is the lowest at which at most that
    share of its benign rows is refused, on out-of-fold scores (`folds` extra fits).
    """
    np = _numpy()
    labels = sorted({label for _, label in examples})
    if benign_label not in labels or len(labels) < 2:
        raise ConfigError(
            f"training needs the benign label {benign_label!r} and at least one other; "
            f"the file has {labels}",
            "name the benign label with --benign-label",
        )
    if target_false_refusal is not None and not 0 <= target_false_refusal < 1:
        raise ConfigError(
            f"--target-false-refusal={target_false_refusal} must be in [0, 1)",
            "give a share such as 0.05 (5 % of benign texts refused)",
        )
    default = resolve_risk(category, where="--category")
    categories = {k: _risk_or(k, default) for k in labels if k != benign_label}
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_test = int(len(order) * holdout) if len(order) >= 20 else 0
    test, train = order[:n_test], order[n_test:]
    counts = [features(text) for text, _ in examples]
    y = [labels.index(label) for _, label in examples]
    fit = _Fit(np, counts, y, len(labels), epochs, l2, min_count)

    idf, weights, bias = fit(train)
    model = Classifier(labels, benign_label, categories, weights, bias, idf)
    if target_false_refusal is not None:
        model.thresholds, validation = _pick_thresholds(
            fit, model, examples, train, folds, target_false_refusal, seed
        )
        model.metrics["validation"] = validation
    model.metrics.update(
        _holdout_metrics(model, [examples[i] for i in test]),
        train_rows=len(train),
        features=len(weights),
        target_false_refusal=target_false_refusal,
    )
    return model


def _numpy() -> Any:
    try:
        import numpy as np
    except ImportError as e:
        raise BackendUnavailable(
            "training the safety classifier needs numpy, which is not installed",
            "pip install 'feilun[data]' (or numpy); using a trained model does not need it",
        ) from e
    return np


class _Fit:
    """Fits the model on a subset of rows (the whole training share, or one fold's rest)."""

    def __init__(
        self,
        np: Any,
        counts: list[Counter[str]],
        y: list[int],
        n_labels: int,
        epochs: int,
        l2: float,
        min_count: int,
    ) -> None:
        self.np, self.counts, self.y, self.k = np, counts, np.array(y), n_labels
        self.epochs, self.l2, self.min_count = epochs, l2, min_count

    def __call__(
        self, rows: list[int]
    ) -> tuple[dict[str, float], dict[str, list[float]], list[float]]:
        """(idf, weights, bias) trained on `rows`: full-batch Adam on the class-balanced loss."""
        np, k = self.np, self.k
        df = Counter(g for i in rows for g in self.counts[i])
        kept = sorted(g for g, c in df.items() if c >= self.min_count)
        n = len(rows)
        idf = {g: math.log((1 + n) / (1 + df[g])) + 1 for g in kept}
        column = {g: j for j, g in enumerate(kept)}
        idx: list[int] = []
        val: list[float] = []
        lengths: list[int] = []
        for i in rows:
            vector = tfidf(self.counts[i], idf)
            idx += [column[g] for g in vector]
            val += vector.values()
            lengths.append(len(vector))
        cols, vals = np.array(idx, dtype=np.int64), np.array(val)  # (nnz,)
        owner = np.repeat(np.arange(n), lengths)  # (nnz,) row of each value
        y = self.y[rows]  # (N,)
        v = len(kept)
        w, b = np.zeros((v, k)), np.zeros(k)
        m_w, s_w, m_b, s_b = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
        onehot = np.eye(k)[y]  # (N, K)
        balance = (n / (k * np.bincount(y, minlength=k).clip(1)))[y][:, None]  # (N, 1)
        for step in range(1, self.epochs + 1):
            scores = self._spread(np.bincount, owner, w[cols] * vals[:, None], n) + b  # (N, K)
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=1, keepdims=True)
            err = balance * (probs - onehot) / n  # (N, K)
            grad_w = self._spread(np.bincount, cols, err[owner] * vals[:, None], v) + self.l2 * w
            grad_b = err.sum(axis=0)
            for p, g, m, s in ((w, grad_w, m_w, s_w), (b, grad_b, m_b, s_b)):  # Adam, lr 0.1
                m *= 0.9
                m += 0.1 * g
                s *= 0.999
                s += 0.001 * g * g
                p -= 0.1 * (m / (1 - 0.9**step)) / (np.sqrt(s / (1 - 0.999**step)) + 1e-8)
        weights = {
            g: [round(float(x), 4) for x in w[j]]
            for j, g in enumerate(kept)
            if np.abs(w[j]).max() >= 1e-3
        }
        return {g: round(x, 4) for g, x in idf.items()}, weights, [float(x) for x in b]

    def _spread(self, bincount: Any, at: Any, values: Any, size: int) -> Any:
        """Sum the rows of `values` (nnz, K) into `size` bins by `at` (nnz,): (size, K)."""
        columns = [bincount(at, weights=values[:, c], minlength=size) for c in range(self.k)]
        return self.np.stack(columns, axis=1).astype(float)


def _pick_thresholds(
    fit: _Fit,
    model: Classifier,
    examples: Sequence[tuple[str, str]],
    train: list[int],
    folds: int,
    target: float,
    seed: int,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Per-language thresholds from out-of-fold P(unsafe), and the recall they give there."""
    order = list(train)
    random.Random(seed + 1).shuffle(order)
    scores: dict[int, float] = {}
    for f in range(folds):
        held = order[f::folds]
        idf, weights, bias = fit(sorted(set(order) - set(held)))
        fold_model = Classifier(model.labels, model.benign_label, {}, weights, bias, idf)
        for i in held:
            scores[i] = fold_model.unsafe_probability(examples[i][0])
    return pick_thresholds(
        [scores[i] for i in train],
        [examples[i][0] for i in train],
        [examples[i][1] != model.benign_label for i in train],
        target,
    )


def pick_thresholds(
    scores: Sequence[float], texts: Sequence[str], is_unsafe: Sequence[bool], target: float
) -> tuple[dict[str, float], dict[str, Any]]:
    """Per language, the lowest cut refusing at most `target` of its benign rows' scores.

    Scores are out of fold (P(unsafe), or a logit); a text refused scores at or above the cut.
    Also the recall and false refusal the cuts give on these rows. A language with fewer than
    MIN_BENIGN_ROWS benign rows, or no unsafe ones, gets no cut (the default applies).
    """
    thresholds: dict[str, float] = {}
    validation: dict[str, Any] = {}
    by_language: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        by_language.setdefault(detect_language(text), []).append(i)
    for language, rows in sorted(by_language.items()):
        benign = sorted((scores[i] for i in rows if not is_unsafe[i]), reverse=True)
        unsafe = [scores[i] for i in rows if is_unsafe[i]]
        if len(benign) < MIN_BENIGN_ROWS or not unsafe:
            continue
        allowed = int(target * len(benign))
        cut = benign[allowed] if allowed < len(benign) else -math.inf
        thresholds[language] = math.nextafter(cut, math.inf)  # refuse only above `cut`
        validation[language] = {
            "threshold": thresholds[language],
            "unsafe_recall": round(sum(s >= thresholds[language] for s in unsafe) / len(unsafe), 4),
            "false_refusal": round(sum(s >= thresholds[language] for s in benign) / len(benign), 4),
            "rows": len(rows),
        }
    return thresholds, validation


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
        is_flagged = model.predict(text)[1] >= 0.5
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
