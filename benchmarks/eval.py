"""Multiple-choice scoring speed: our batched runner vs one request per option, same run.

Items are the first `--limit` questions of ../shared/data/mmlu/val.jsonl, rendered zero-shot in
lm-evaluation-harness's MMLU format. Every runner scores the same (context, " A".." D")
requests on the same weights in the same process:
- ours: `evaluation.scoring.HfScorer` (length-sorted batches, left padding, one row per
  question when every option is one token, logits only where scored);
- per-option: each (context, option) alone with full logits, which is the request granularity
  of lm-eval's `hf` model with `--batch_size 1`;
- lm-eval `hf` (HFLM on the same model object), when `lm_eval` is importable (it is not part of
  our dev install); otherwise the row says so.
Accuracy and the largest log-likelihood difference to ours show the runners agree.

    .venv/bin/python benchmarks/eval.py                        # tiny random model, 166 items
    .venv/bin/python benchmarks/eval.py --model smollm2 --limit 40
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu" / "val.jsonl"
Requests = list[tuple[str, list[str]]]


def load_model(name: str) -> tuple[Any, Any]:
    """The tiny random Llama, or the packaged SmolLM2 through a throwaway workspace."""
    if name == "tiny":
        from feilun.models.tiny import build_tiny_model

        return build_tiny_model(init_std=0.3)
    from feilun.app.workspace import init_workspace
    from feilun.core import registry as plugins

    folder = Path(tempfile.mkdtemp(prefix="feilun-bench-eval-"))
    ws, _ = init_workspace(folder / "ws", env={})
    try:
        record = ws.models.get("smollm2-135m-instruct")
        source = plugins.lookup("model_sources", record.source)
        return source.load(record.location, ws.models.cache_dir)
    finally:
        ws.close()


def requests_of(limit: int) -> tuple[Requests, list[int]]:
    from feilun.evaluation.items import LETTERS, load_mc
    from feilun.evaluation.mc import STYLES, render_context

    items = load_mc(DATA).items[:limit]
    requests = [
        (render_context(i, [], STYLES["mmlu"]), [" " + LETTERS[k] for k in range(len(i.choices))])
        for i in items
    ]
    return requests, [i.answer for i in items]


def ours(model: Any, tokenizer: Any, requests: Requests) -> list[list[float]]:
    from feilun.evaluation.scoring import HfScorer

    return HfScorer(model, tokenizer, name="bench").loglikelihoods(requests)


def per_option(model: Any, tokenizer: Any, requests: Requests) -> list[list[float]]:
    scores = []
    limit = model.config.max_position_embeddings
    with torch.inference_mode():
        for context, options in requests:
            context_ids = tokenizer.encode(context, add_special_tokens=False)
            row = []
            for option in options:
                whole = tokenizer.encode(context + option, add_special_tokens=False)
                target = whole[len(context_ids) :]
                inputs = (context_ids + target)[:-1][-limit:]  # left-truncated, as lm-eval does
                ids = torch.tensor([inputs])  # (1, T)
                logprobs = model(ids).logits.log_softmax(-1)[0]  # (T, V)
                start = len(inputs) - len(target)
                row.append(sum(logprobs[start + k, t].item() for k, t in enumerate(target)))
            scores.append(row)
    return scores


def lm_eval_hf(model: Any, tokenizer: Any, requests: Requests) -> list[list[float]] | None:
    try:
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM
    except ImportError:
        return None
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=16)
    instances = [
        Instance("loglikelihood", {}, (context, option), idx)
        for context, options in requests
        for idx, option in enumerate(options)
    ]
    flat = [value for value, _ in lm.loglikelihood(instances)]
    out, at = [], 0
    for _, options in requests:
        out.append(flat[at : at + len(options)])
        at += len(options)
    return out


def accuracy(scores: Sequence[Sequence[float]], gold: Sequence[int]) -> float:
    right = sum(
        max(range(len(s)), key=s.__getitem__) == g for s, g in zip(scores, gold, strict=True)
    )
    return right / len(gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--limit", type=int, default=166)
    args = parser.parse_args()
    model, tokenizer = load_model(args.model)
    model.eval()
    requests, gold = requests_of(args.limit)
    runners: list[tuple[str, Callable[..., list[list[float]] | None]]] = [
        ("ours (batched, shared prefix)", ours),
        ("per-option, batch 1", per_option),
        ("lm-eval hf", lm_eval_hf),
    ]
    rows, reference = [], None
    for name, run in runners:
        started = time.perf_counter()
        scores = run(copy.deepcopy(model), tokenizer, requests)
        elapsed = time.perf_counter() - started
        if scores is None:
            rows.append((name, "not installed", "", "", ""))
            continue
        reference = reference or scores
        diff = max(
            abs(a - b)
            for x, y in zip(scores, reference, strict=True)
            for a, b in zip(x, y, strict=True)
        )
        rows.append(
            (
                name,
                f"{len(requests) / elapsed:.2f}",
                f"{accuracy(scores, gold):.4f}",
                f"{diff:.1e}",
                elapsed,
            )
        )
    ours_s = rows[0][4]
    print(
        f"model {args.model}, {len(requests)} MMLU val items, zero-shot, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'runner':32} {'items/s':>10} {'accuracy':>9} {'max |Δ|':>8} {'ours ×':>7}")
    for name, speed, acc, diff, elapsed in rows:
        ratio = f"{elapsed / ours_s:.1f}" if isinstance(elapsed, float) else ""
        print(f"{name:32} {speed:>10} {acc:>9} {diff:>8} {ratio:>7}")


if __name__ == "__main__":
    main()
