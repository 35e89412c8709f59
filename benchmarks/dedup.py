"""Near-dedup speed and kept set: feilun `NearDedup` vs a straightforward datasketch MinHashLSH.

    .venv/bin/python benchmarks/dedup.py                 # table on stdout, JSON in results/
    .venv/bin/python benchmarks/dedup.py --limit 500     # a quick run on fewer documents

The corpus is real text (CMRC 2018 contexts, SciFact abstracts, paragraphs of the industry
regulations in zh and en) plus planted near-duplicates: copies with a few % of random character
substitutions, insertions and deletions, placed after their original. Both sides shingle the
same canonical characters with the same threshold, num_perm and LSH bands, in the same run.

Speed is measured against stock datasketch (SHA-1 per shingle). The kept set is compared with
datasketch given our shingle hash as its `hashfunc`: two MinHash runs with different hash
functions are independent random estimates, which disagree near the threshold whatever the
implementation (stock datasketch under seed 1 and seed 2 shows how much).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from feilun.data.items import Item
from feilun.data.minhash import canonical_chars, shingle_hashes
from feilun.data.operators.near_dedup import NearDedup

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
MIN_CHARS = 80  # canonical characters: shorter paragraphs are headings and list stubs
SEED = 20250601

Removed = dict[str, list[str]]  # removed id -> the kept item(s) it was found to duplicate
ShingleHash = Callable[[str], int]
_MASK64 = (1 << 64) - 1
_ROLL = 0x9E3779B97F4A7C15  # the multiplier of feilun.data.minhash's n-gram hash
SAME_HASH = "datasketch, feilun shingle hash"
SAME_HASH_CHECKED = "datasketch, feilun hash + J check"


# -- corpus ----------------------------------------------------------------------------------


def load_base(limit: int | None) -> list[tuple[str, str]]:
    """(id, text) of real documents, exact duplicates (of canonical text) dropped."""
    texts: list[tuple[str, str]] = []
    with (DATA / "cmrc2018" / "trial.jsonl").open(encoding="utf-8") as f:
        contexts = dict.fromkeys(json.loads(line)["context"] for line in f)
    texts += [(f"cmrc/{i}", t) for i, t in enumerate(contexts)]
    with (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        texts += [(f"scifact/{row['_id']}", row["text"]) for row in map(json.loads, f)]
    for path in sorted((DATA / "industry" / "docs").glob("*/*.md")):
        paragraphs = path.read_text(encoding="utf-8").split("\n\n")
        stem = f"{path.parent.name}/{path.stem}"
        texts += [(f"{stem}#{i}", p.strip()) for i, p in enumerate(paragraphs)]
    seen: set[str] = set()
    base = []
    for doc_id, text in texts:
        chars = canonical_chars(text)
        if len(chars) >= MIN_CHARS and chars not in seen:
            seen.add(chars)
            base.append((doc_id, text))
    random.Random(SEED).shuffle(base)
    return base[:limit] if limit else base


def mutate(text: str, rate: float, rng: random.Random) -> str:
    """`text` with round(rate·len) random single-character substitutions, inserts, deletes."""
    chars = list(text)
    alphabet = [c for c in text if not c.isspace()] or ["x"]
    for _ in range(max(1, round(rate * len(chars)))):
        at = rng.randrange(len(chars))
        edit = rng.choice(("substitute", "insert", "delete"))
        if edit == "substitute":
            chars[at] = rng.choice(alphabet)
        elif edit == "insert":
            chars.insert(at, rng.choice(alphabet))
        elif len(chars) > 1:
            del chars[at]
    return "".join(chars)


def plant(
    base: list[tuple[str, str]], share: float, max_rate: float
) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Items with near-duplicate copies placed after their originals; {copy id: source id}."""
    rng = random.Random(SEED)
    placed = [(float(k), doc_id, text) for k, (doc_id, text) in enumerate(base)]
    truth: dict[str, str] = {}
    for n in range(round(share * len(base))):
        k = rng.randrange(len(base))
        source_id, text = base[k]
        copy_id = f"copy{n}-of-{source_id}"
        placed.append(
            (rng.uniform(k, len(base)), copy_id, mutate(text, rng.uniform(0.002, max_rate), rng))
        )
        truth[copy_id] = source_id
    placed.sort(key=lambda entry: entry[0])
    return [(doc_id, text) for _, doc_id, text in placed], truth


def exact_jaccard(first: str, second: str, ngram: int) -> float:
    """True Jaccard of the two texts' shingle sets (the quantity MinHash estimates)."""

    def shingles(text: str) -> set[str]:
        c = canonical_chars(text)
        return {c[i : i + ngram] for i in range(max(1, len(c) - ngram + 1))}

    a, b = shingles(first), shingles(second)
    return len(a & b) / len(a | b)


# -- the two implementations -----------------------------------------------------------------


def feilun_shingle_hash(shingle: str) -> int:
    """Our 32-bit shingle hash, in plain Python for datasketch's `hashfunc`.

    A polynomial of the code points mod 2^64, MurmurHash3's fmix64, the high 32 bits: what
    `feilun.data.minhash.shingle_hashes` computes with numpy for every window at once.
    """
    h = 0
    for char in shingle:
        h = (h * _ROLL + ord(char)) & _MASK64
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & _MASK64
    h ^= h >> 33
    h = (h * 0xC4CEB9FE1A85EC53) & _MASK64
    h ^= h >> 33
    return h >> 32


def check_shingle_hash(items: list[tuple[str, str]], ngram: int) -> None:
    """The plain-Python hash equals the numpy one on every shingle of the first items."""
    for _, text in items[:50]:
        chars = canonical_chars(text)
        windows = [chars[i : i + ngram] for i in range(max(1, len(chars) - ngram + 1))]
        plain = [feilun_shingle_hash(w) for w in windows] if chars else []
        assert plain == shingle_hashes(text, ngram).tolist(), "shingle hashes differ"


def run_feilun(items: list[tuple[str, str]], params: NearDedup.Params) -> tuple[Removed, float]:
    """Our operator as a pipeline runs it: key() per item, then one select()."""
    started = time.perf_counter()
    operator = NearDedup(params)
    keyed = [(doc_id, operator.key(Item(doc_id, text))) for doc_id, text in items]
    reasons = operator.select(keyed)
    seconds = time.perf_counter() - started
    return {i: [r.split("of ", 1)[1].split(" (", 1)[0]] for i, r in reasons.items()}, seconds


def run_datasketch(
    items: list[tuple[str, str]],
    params: NearDedup.Params,
    is_batch: bool,
    seed: int,
    hashfunc: ShingleHash | None = None,
    is_checked: bool = False,
) -> tuple[Removed, float]:
    """The way people write it: a MinHash updated per shingle, query, insert if new.

    `hashfunc` None is datasketch's default (SHA-1 of the UTF-8 shingle); `is_checked` keeps
    only the hits whose estimated Jaccard is ≥ the threshold, as our operator does.
    """
    from datasketch import MinHash, MinHashLSH

    started = time.perf_counter()
    n = params.ngram
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    kept: dict[str, MinHash] = {}
    removed: Removed = {}
    for doc_id, text in items:
        chars = canonical_chars(text)
        if not chars:
            continue
        windows = [chars[i : i + n] for i in range(max(1, len(chars) - n + 1))]
        shingles = [w.encode("utf-8") for w in windows] if hashfunc is None else windows
        m = MinHash(num_perm=params.num_perm, seed=seed, hashfunc=hashfunc)
        if is_batch:
            m.update_batch(shingles)
        else:
            for shingle in shingles:
                m.update(shingle)
        hits = lsh.query(m)
        if is_checked:
            hits = [h for h in hits if m.jaccard(kept[h]) >= params.threshold]
        if hits:
            removed[doc_id] = hits
        else:
            lsh.insert(doc_id, m)
            kept[doc_id] = m
    return removed, time.perf_counter() - started


# -- measures --------------------------------------------------------------------------------


def agreement(ids: list[str], first: Removed, second: Removed) -> dict[str, float]:
    """Jaccard of the kept id sets and the share of items with the same keep/drop decision."""
    kept_1 = {i for i in ids if i not in first}
    kept_2 = {i for i in ids if i not in second}
    same = sum((i in first) == (i in second) for i in ids)
    return {
        "kept_jaccard": len(kept_1 & kept_2) / len(kept_1 | kept_2),
        "same_decision": same / len(ids),
    }


def detection(removed: Removed, truth: dict[str, str]) -> dict[str, float]:
    """Precision and recall of "removed" against the planted copies."""
    hits = sum(i in truth for i in removed)
    return {
        "removed": len(removed),
        "planted_hits": hits,
        "precision": hits / len(removed) if removed else 1.0,
        "recall": hits / len(truth) if truth else 1.0,
    }


def timed(runs: int, fn: Callable[[], tuple[Removed, float]]) -> tuple[Removed, float]:
    results = [fn() for _ in range(runs)]
    return results[0][0], statistics.median(s for _, s in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="base documents to use")
    parser.add_argument("--copies", type=float, default=0.25, help="planted copies per document")
    parser.add_argument(
        "--max-edit",
        type=float,
        nargs="+",
        default=[0.02, 0.05],
        help="one scenario per value: copies get 0.2%% to this share of characters edited",
    )
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1, help="runs per row; median time")
    args = parser.parse_args()

    params = NearDedup.Params(threshold=args.threshold, num_perm=args.num_perm, ngram=args.ngram)
    operator = NearDedup(params)
    base = load_base(args.limit)
    reports = {}
    for max_edit in args.max_edit:
        items, truth = plant(base, args.copies, max_edit)
        check_shingle_hash(items, params.ngram)
        chars = sum(len(t) for _, t in items) / len(items)
        print(
            f"\n## copies with 0.2-{max_edit:.0%} of characters edited: {len(items)} items "
            f"({len(base)} real + {len(truth)} planted, {chars:.0f} chars on average); "
            f"threshold={params.threshold} num_perm={params.num_perm} ngram={params.ngram} "
            f"bands={operator.bands} rows={operator.rows}\n",
            flush=True,
        )
        rows: dict[str, tuple[Removed, float]] = {}
        plan: list[tuple[str, Callable[[], tuple[Removed, float]]]] = [
            ("feilun NearDedup", partial(run_feilun, items, params)),
            ("datasketch, update per shingle", partial(run_datasketch, items, params, False, 1)),
            ("datasketch, update_batch", partial(run_datasketch, items, params, True, 1)),
            ("datasketch, update_batch, seed=2", partial(run_datasketch, items, params, True, 2)),
            (SAME_HASH, partial(run_datasketch, items, params, True, 1, feilun_shingle_hash)),
            (
                SAME_HASH_CHECKED,
                partial(run_datasketch, items, params, True, 1, feilun_shingle_hash, True),
            ),
        ]
        for label, fn in plan:
            print(f"running {label} …", file=sys.stderr, flush=True)
            rows[label] = timed(args.repeats, fn)
        report = summarise(rows, items, truth, params.ngram, params.threshold)
        print_report(report)
        reports[f"max_edit={max_edit}"] = report
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"dedup-{time.strftime('%Y%m%d-%H%M%S')}.json"
    config = {**vars(args), "bands": operator.bands, "rows": operator.rows}
    out.write_text(json.dumps({"config": config, "scenarios": reports}, indent=2))


def summarise(
    rows: dict[str, tuple[Removed, float]],
    items: list[tuple[str, str]],
    truth: dict[str, str],
    ngram: int,
    threshold: float,
) -> dict[str, Any]:
    ids = [doc_id for doc_id, _ in items]
    texts = dict(items)
    ours, _ = rows["feilun NearDedup"]
    baseline, _ = rows["datasketch, update per shingle"]
    assert baseline == rows["datasketch, update_batch"][0], "update_batch must equal update"
    planted_j = [exact_jaccard(texts[c], texts[s], ngram) for c, s in truth.items()]
    report: dict[str, Any] = {
        "threshold": threshold,
        "items": len(ids),
        "planted": len(truth),
        "planted_true_jaccard_ge_threshold": sum(j >= threshold for j in planted_j) / len(truth),
        "planted_true_jaccard_within_0.1": sum(abs(j - threshold) < 0.1 for j in planted_j)
        / len(truth),
        "rows": {},
    }
    for label, (removed, seconds) in rows.items():
        row: dict[str, Any] = {
            "seconds": seconds,
            "docs_per_s": len(ids) / seconds,
            **detection(removed, truth),
        }
        row |= {f"vs_ours_{k}": v for k, v in agreement(ids, ours, removed).items()}
        # Unplanted removals whose named original really is ≥ threshold: natural near-dups.
        extra = [i for i in removed if i not in truth]
        row["unplanted_true_ge_threshold"] = sum(
            max(exact_jaccard(texts[i], texts[o], ngram) for o in removed[i]) >= threshold
            for i in extra
        )
        # Items decided differently: true Jaccard with the item(s) the remover matched them to.
        for side, mine, other in (("only_theirs", removed, ours), ("only_ours", ours, removed)):
            row[f"{side}_true_jaccard"] = sorted(
                max(exact_jaccard(texts[i], texts[o], ngram) for o in mine[i])
                for i in set(mine) - set(other)
            )
        report["rows"][label] = row
    speed = report["rows"]
    report["speedup_vs_baseline"] = (
        speed["feilun NearDedup"]["docs_per_s"]
        / speed["datasketch, update per shingle"]["docs_per_s"]
    )
    report["datasketch_seed_1_vs_2"] = agreement(
        ids, baseline, rows["datasketch, update_batch, seed=2"][0]
    )
    report["same_hash_vs_ours"] = agreement(ids, ours, rows[SAME_HASH][0])
    report["stock_vs_ours"] = agreement(ids, ours, baseline)
    return report


def print_report(report: dict[str, Any]) -> None:
    print(
        f"{'implementation':34} {'docs/s':>9} {'removed':>8} {'precision':>10} {'recall':>7} "
        f"{'kept J vs ours':>15} {'same decision':>14}"
    )
    for label, row in report["rows"].items():
        print(
            f"{label:34} {row['docs_per_s']:9.0f} {row['removed']:8d} {row['precision']:10.3f} "
            f"{row['recall']:7.3f} {row['vs_ours_kept_jaccard']:15.4f} "
            f"{row['vs_ours_same_decision']:14.2%}"
        )
    print()
    noise = report["datasketch_seed_1_vs_2"]
    same, stock = report["same_hash_vs_ours"], report["stock_vs_ours"]
    print(f"speed ratio feilun / datasketch (per shingle): {report['speedup_vs_baseline']:.1f}x")
    print(
        f"kept set vs datasketch with the same shingle hash: kept J {same['kept_jaccard']:.4f}, "
        f"same decision {same['same_decision']:.2%} (stock SHA-1 datasketch: "
        f"{stock['kept_jaccard']:.4f}, {stock['same_decision']:.2%})"
    )
    print(
        f"noise floor, datasketch seed 1 vs seed 2: kept J {noise['kept_jaccard']:.4f}, "
        f"same decision {noise['same_decision']:.2%}"
    )
    print(
        f"planted copies whose true Jaccard is ≥ threshold: "
        f"{report['planted_true_jaccard_ge_threshold']:.1%}, within ±0.1 of it: "
        f"{report['planted_true_jaccard_within_0.1']:.1%} (of {report['planted']})"
    )
    threshold = report["threshold"]
    for label in ("datasketch, update per shingle", SAME_HASH):
        baseline = report["rows"][label]
        parts = []
        for side, who in (("only_theirs", "only by datasketch"), ("only_ours", "only by feilun")):
            js = baseline[f"{side}_true_jaccard"]
            median = f", median {statistics.median(js):.2f}" if js else ""
            below = sum(j < threshold for j in js)
            parts.append(f"{len(js)} removed {who} ({below} truly below{median})")
        print(f"decided differently from {label}: " + "; ".join(parts))
    print(
        "unplanted removals whose true Jaccard with a kept item is ≥ threshold: "
        + ", ".join(
            f"{label} {row['unplanted_true_ge_threshold']}/{row['removed'] - row['planted_hits']}"
            for label, row in report["rows"].items()
        )
    )


if __name__ == "__main__":
    main()
