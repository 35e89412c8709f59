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
Layers: the shipped default lexicon; plus a char n-gram classifier trained on a seeded half of
all these items (split by id, so an XSafety item's zh and en versions fall in the same half)
and scored on the other half only; the 15k-term lexicon, alone and with the classifier.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ahocorasick

from feilun.governance.classifier import train_classifier
from feilun.governance.lexicon import Entry, KeywordMatcher, Lexicon, default_lexicon, fold_case
from feilun.governance.moderation import Moderator

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
SEED = 20250601


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


def refusals(big: Lexicon) -> list[dict[str, Any]]:
    sets = load_sets()
    train = [(t, "unsafe" if bad else "safe") for s in sets.values() for i, t, bad in s if split(i)]
    classifier = train_classifier(train, "safe")
    moderators = {
        "default lexicon": (Moderator(default_lexicon()), False),
        "default lexicon + classifier (test half)": (
            Moderator(default_lexicon(), classifier=classifier),
            True,
        ),
        "+ 15k lexicon": (Moderator(big.merged(default_lexicon())), False),
        "+ 15k lexicon + classifier (test half)": (
            Moderator(big.merged(default_lexicon()), classifier=classifier),
            True,
        ),
    }
    rows = []
    for layer, (moderator, is_test_half) in moderators.items():
        for name, items in sets.items():
            chosen = [(i, t) for i, t, _ in items if not (is_test_half and split(i))]
            refused = sum(moderator.check(t).decision in ("refuse", "block") for _, t in chosen)
            rows.append(
                {
                    "layers": layer,
                    "set": name,
                    "n": len(chosen),
                    "refused": refused,
                    "rate": round(refused / len(chosen), 4),
                }
            )
    rows += thresholds(classifier, sets)
    print("\n## refusal (unsafe sets: higher is better) and false refusal (benign: lower)\n")
    print("| layers | set | n | refused | rate |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layers']} | {r['set']} | {r['n']} | {r['refused']} | {r['rate']:.1%} |")
    return rows


def thresholds(
    classifier: Any, sets: dict[str, list[tuple[str, str, bool]]]
) -> list[dict[str, Any]]:
    """The classifier alone on the test half at stricter thresholds (the policy's setting)."""
    rows = []
    for name, items in sets.items():
        scores = [classifier.predict(t)[1] for i, t, _ in items if not split(i)]
        for threshold in (0.7, 0.9):
            refused = sum(score >= threshold for score in scores)
            rows.append(
                {
                    "layers": f"classifier alone, threshold {threshold} (test half)",
                    "set": name,
                    "n": len(scores),
                    "refused": refused,
                    "rate": round(refused / len(scores), 4),
                }
            )
    return sorted(rows, key=lambda r: r["layers"])


def latency(big: Lexicon, repeats: int) -> list[dict[str, Any]]:
    sets = load_sets()
    prompts = [t for items in sets.values() for _, t, _ in items]
    train = [(t, "unsafe" if bad else "safe") for s in sets.values() for _, t, bad in s]
    classifier = train_classifier(train, "safe", epochs=30)
    lexicon = big.merged(default_lexicon())
    cases = {
        "check, default lexicon": Moderator(default_lexicon()),
        "check, 15k lexicon": Moderator(lexicon),
        "check, 15k lexicon + classifier": Moderator(lexicon, classifier=classifier),
    }
    rows = []
    for label, moderator in cases.items():
        times = []
        for _ in range(repeats):
            for text in prompts:
                start = time.perf_counter()
                moderator.check(text)
                times.append(time.perf_counter() - start)
        rows.append(_latency_row(label, times))
    moderator = Moderator(lexicon)
    times = []
    answer = "".join(prompts[:50])
    for _ in range(repeats):
        guard = moderator.stream()
        for i in range(0, len(answer), 4):  # ~ one token of Chinese or English per piece
            start = time.perf_counter()
            guard.feed(answer[i : i + 4])
            times.append(time.perf_counter() - start)
    rows.append(_latency_row("StreamGuard.feed, 4-char pieces, 15k lexicon", times))
    chars = statistics.mean(len(t) for t in prompts)
    print(f"\n## latency per call ({len(prompts)} prompts, {chars:.0f} chars on average)\n")
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
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    big = sensitive_lexicon()
    report = {
        "throughput": throughput(big, args.mb, args.repeats),
        "latency": latency(big, args.repeats),
        "refusal": refusals(big),
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
