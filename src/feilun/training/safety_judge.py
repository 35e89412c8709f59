"""Train the safety judge: a logistic head on a base model's frozen states, optionally stacked.

The base model encodes every row once (the costly part); the head is class-balanced logistic
regression on standardised features. Out-of-fold logits give the thresholds (each language's
lowest at which at most `target_false_refusal` of its benign rows is refused) and, with an
n-gram classifier to stack on, the 3 weights that combine the two scores (the n-gram's
out-of-fold P(unsafe) comes from refitting it on the same folds).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from feilun.core.errors import ConfigError
from feilun.governance.classifier import (
    Classifier,
    log_odds,
    pick_thresholds,
    train_classifier,
)
from feilun.governance.moderation import detect_language
from feilun.governance.taxonomy import resolve_risk
from feilun.models.safety_judge import Backbone, SafetyJudge

#: The layer read, as a share of the depth: 22 of SmolLM2-135M's 30 was the best single layer
#: on the shared safety sets (benchmarks/moderation.py --judge).
DEFAULT_DEPTH = 0.75
DEFAULT_L2 = 1e-2


def train_judge(
    examples: Sequence[tuple[str, str]],
    benign_label: str,
    backbone: Backbone,
    *,
    l2: float = DEFAULT_L2,
    category: str = "other_prohibited",
    ngram: Classifier | None = None,
    ngram_epochs: int = 100,
    target_false_refusal: float = 0.05,
    folds: int = 5,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
) -> SafetyJudge:
    """Fit the judge on (text, label) rows (any label but `benign_label` is unsafe).

    `backbone` encodes the rows (see `default_layer` for where to cut a base model); with
    `ngram` (trained on the same rows for `ngram_epochs`) the judge is stacked on it.
    Validation figures (out of fold, at the picked thresholds) go in `meta["validation"]`.
    """
    import torch

    labels = {label for _, label in examples}
    if benign_label not in labels or len(labels) < 2:
        raise ConfigError(
            f"training needs the benign label {benign_label!r} and at least one other; "
            f"the file has {sorted(labels)}",
            "name the benign label with --benign-label",
        )
    texts = [t for t, _ in examples]
    y = torch.tensor([float(label != benign_label) for _, label in examples])  # (N,)
    fold = [k % folds for k in range(len(examples))]
    random.Random(seed).shuffle(fold)
    x = backbone.features(texts)  # (N, 2 * hidden)
    head = _out_of_fold(lambda rows: _fit(x[rows], y[rows], l2), x, fold, folds)
    weights, bias = _fit(x, y, l2)
    stack = None
    score = head
    if ngram is not None:
        second = _ngram_out_of_fold(examples, benign_label, ngram_epochs, fold, folds)
        z = torch.stack([head, second], 1)  # (N, 2): head logit, n-gram log-odds
        score = _out_of_fold(lambda rows: _fit(z[rows], y[rows], 0.0), z, fold, folds)
        w, b = _fit(z, y, 0.0)
        stack = (float(w[0]), float(w[1]), b)
    thresholds, validation = pick_thresholds(
        score.tolist(), texts, [bool(v) for v in y.tolist()], target_false_refusal
    )
    judge = SafetyJudge(
        backbone,
        weights=[float(v) for v in weights],
        bias=bias,
        language_of=detect_language,
        thresholds=thresholds,
        category=resolve_risk(category, where="--category"),
        stack=stack,
        second=None if ngram is None else ngram_log_odds(ngram),
        meta={**(meta or {}), "layer": backbone.layer, "l2": l2, "rows": len(examples)},
    )
    judge.meta["validation"] = validation
    return judge


def default_layer(model: Any) -> int:
    """The layer a judge on this causal LM reads by default: 3/4 of its depth."""
    return max(1, int(model.config.num_hidden_layers * DEFAULT_DEPTH))


def _fit(x: Any, y: Any, l2: float) -> tuple[Any, float]:
    """Class-balanced logistic regression on standardised `x` (N, D), by L-BFGS.

    Returns weights on the raw features (D,) and the bias, the standardisation folded in.
    """
    import torch

    mean, scale = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / scale
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    share = y.mean().clamp(1e-6, 1 - 1e-6)
    balance = torch.where(y == 1, 0.5 / share, 0.5 / (1 - share))  # (N,)
    optimizer = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> Any:
        optimizer.zero_grad()
        logits = xs @ w + b
        value = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, balance)
        value = value + l2 * (w * w).sum()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    optimizer.step(loss)  # type: ignore[no-untyped-call]
    raw = (w / scale).detach()
    return raw, float(b.detach() - mean @ raw)


def _out_of_fold(fit: Callable[[Any], tuple[Any, float]], x: Any, fold: list[int], k: int) -> Any:
    """Each row's logit from the fit on the other folds: (N,)."""
    import torch

    out = torch.zeros(len(fold))
    for f in range(k):
        held = torch.tensor([i for i, g in enumerate(fold) if g == f])
        rest = torch.tensor([i for i, g in enumerate(fold) if g != f])
        weights, bias = fit(rest)
        out[held] = x[held] @ weights + bias
    return out


def ngram_log_odds(model: Classifier) -> Callable[[str], float]:
    """The n-gram classifier's log-odds of unsafe: what the judge is stacked on."""
    return lambda text: log_odds(model.unsafe_probability(text))


def _ngram_out_of_fold(
    examples: Sequence[tuple[str, str]],
    benign_label: str,
    epochs: int,
    fold: list[int],
    k: int,
) -> Any:
    """The n-gram classifier's out-of-fold log-odds of unsafe, refit on each fold's rest."""
    import torch

    out = torch.zeros(len(examples))
    for f in range(k):
        rest = [row for row, g in zip(examples, fold, strict=True) if g != f]
        model = train_classifier(rest, benign_label, epochs=epochs, target_false_refusal=None)
        second = ngram_log_odds(model)
        for i, g in enumerate(fold):
            if g == f:
                out[i] = second(examples[i][0])
    return out
