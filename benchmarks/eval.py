"""Multiple choice vs lm-evaluation-harness `hf`: same items, same weights, same run.

Items: the first `--per-subject` questions of each subject of ../shared/data/mmlu/val.jsonl and
../shared/data/cmmlu/test_other_subjects.jsonl, `--shots` examples per subject from each set's
dev.jsonl, in the `mmlu` prompt format.
- ours: `evaluation.mc.run_mc` with `evaluation.scoring.HfScorer` (the question run once when
  every option is one token, a batch's common prefix run once as a KV cache, logits only where
  scored);
- lm-eval hf: lm-eval 0.4.13 builds its own requests from the raw JSONL rows with its packaged
  MMLU task config (`ConfigurableTask`, documents handed over in memory: no dataset download),
  `HFLM` on the same model object scores them, and the task's `process_results` gives accuracy.
  Not part of our dev install: `make fidelity-env` adds it; without it the row says so.
Prompts: every (context, continuation) lm-eval built must equal ours. Items/s times scoring only.

    .venv/bin/python benchmarks/eval.py                          # tiny random model
    .venv/bin/python benchmarks/eval.py --model smollm2 --per-subject 3
    .venv/bin/python benchmarks/eval.py --model smollm2 --shots 5 --sets cmmlu --per-subject 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from feilun.evaluation.items import Loaded, McItem, load_mc
from feilun.evaluation.mc import McConfig, run_mc
from feilun.evaluation.scoring import HfScorer, Request

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {
    "mmlu": ("mmlu/val.jsonl", "mmlu/dev.jsonl"),
    "cmmlu": ("cmmlu/test_other_subjects.jsonl", "cmmlu/dev.jsonl"),
}
Contexts = dict[str, list[tuple[str, str]]]  # item id -> its (context, continuation) requests


@dataclass
class Run:
    """One runner on one set: accuracy, speed, and the requests it scored per item."""

    accuracy: float
    items_per_s: float  # by wall time
    items_per_cpu_s: float  # by this process's CPU time: steadier when neighbours load the CPU
    requests: Contexts
    scores: dict[str, list[float]]


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


def pick(items: Sequence[McItem], per_subject: int | None) -> list[McItem]:
    """The first `per_subject` items of each subject, in file order (all when None)."""
    seen: dict[str, int] = {}
    picked = []
    for item in items:
        seen[item.subject] = seen.get(item.subject, 0) + 1
        if per_subject is None or seen[item.subject] <= per_subject:
            picked.append(item)
    return picked


class Recording:
    """Our scorer, keeping the requests `run_mc` sends it (the prompts actually scored)."""

    def __init__(self, scorer: HfScorer) -> None:
        self.name = scorer.name
        self.scorer = scorer
        self.requests: list[Request] = []
        self.elapsed_s = self.cpu_s = 0.0

    def loglikelihoods(
        self, requests: Sequence[Request], progress: Callable[[int], None] | None = None
    ) -> list[list[float]]:
        """Record, then score with the wrapped scorer (timed)."""
        self.requests.extend(requests)
        started, cpu = time.perf_counter(), time.process_time()
        scores = self.scorer.loglikelihoods(requests, progress)
        self.elapsed_s += time.perf_counter() - started
        self.cpu_s += time.process_time() - cpu
        return scores


def run_ours(
    model: Any, tokenizer: Any, test: Path, dev: Path, ids: set[str], shots: int, batch_size: int
) -> Run:
    """`run_mc` on the chosen items of `test` (few-shot pool: `dev`), log-likelihood scoring."""
    loaded = load_mc(test)
    chosen = Loaded(loaded.path, [i for i in loaded.items if i.id in ids], [], loaded.sha256)
    scorer = Recording(HfScorer(model, tokenizer, name="ours", batch_size=batch_size))
    config = McConfig(format="mmlu", shots=shots, scoring="loglikelihood")
    pool = load_mc(dev).items
    result = run_mc("fidelity", chosen, config, scorer=scorer, chat=None, fewshot_pool=pool)
    requests = {
        item.id: [(context, option) for option in options]
        for item, (context, options) in zip(chosen.items, scorer.requests, strict=True)
    }
    return Run(
        accuracy=result.metrics["accuracy"].value,
        items_per_s=len(chosen.items) / scorer.elapsed_s,
        items_per_cpu_s=len(chosen.items) / scorer.cpu_s,
        requests=requests,
        scores={str(row["id"]): list(row["logprobs"]) for row in result.items},
    )


def lm_eval_tasks(test: Path, dev: Path, ids: set[str], shots: int) -> list[Any]:
    """lm-eval's own MMLU task per subject, over the raw JSONL rows (cais/mmlu's fields)."""
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"

    def docs(path: Path, keep: Callable[[dict[str, Any]], bool]) -> dict[str, list[dict[str, Any]]]:
        by_subject: dict[str, list[dict[str, Any]]] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if keep(row):
                doc = {**row, "answer": row["answer_index"]}  # cais/mmlu: answer is the index
                by_subject.setdefault(row["subject"], []).append(doc)
        return by_subject

    tests = docs(test, lambda row: row["id"] in ids)
    fewshot = docs(dev, lambda row: row["subject"] in tests)
    tasks = []
    for subject, rows in tests.items():
        yaml_file = folder / f"mmlu_{subject}.yaml"
        config = load_yaml(yaml_file if yaml_file.exists() else folder / "_default_template_yaml")
        # A subject MMLU lacks gets the description lm-eval's mmlu/_generate_configs.py writes.
        about = " ".join(subject.split("_"))
        config.setdefault("task", f"mmlu_{subject}")
        config.setdefault(
            "description",
            f"The following are multiple choice questions (with answers) about {about}.\n\n",
        )
        splits = datasets.DatasetDict(
            test=datasets.Dataset.from_list(rows),
            dev=datasets.Dataset.from_list(fewshot.get(subject, [])),
        )
        config.update(num_fewshot=shots, custom_dataset=lambda splits=splits, **_: splits)
        task = ConfigurableTask(config=config)
        task.build_all_requests()
        tasks.append(task)
    return tasks


def run_lm_eval(model: Any, tokenizer: Any, tasks: Sequence[Any], batch_size: int) -> Run:
    """HFLM on the same model scores every task's instances; lm-eval's own `acc` per doc."""
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    instances = [instance for task in tasks for instance in task.instances]
    started, cpu = time.perf_counter(), time.process_time()
    results = lm.loglikelihood(instances, disable_tqdm=True)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    for instance, result in zip(instances, results, strict=True):
        instance.resps.append(result)
    requests: Contexts = {}
    scores: dict[str, list[float]] = {}
    right = []
    for task in tasks:
        docs = list(task.test_docs())
        by_doc: dict[int, list[Any]] = {}
        for instance in task.instances:
            by_doc.setdefault(instance.doc_id, []).append(instance)
        for doc_id, group in sorted(by_doc.items()):
            group.sort(key=lambda instance: instance.idx)
            doc = docs[doc_id]
            requests[doc["id"]] = [tuple(instance.args) for instance in group]
            scores[doc["id"]] = [instance.resps[0][0] for instance in group]
            right.append(task.process_results(doc, [i.resps[0] for i in group])["acc"])
    return Run(
        accuracy=sum(right) / len(right),
        items_per_s=len(right) / elapsed,
        items_per_cpu_s=len(right) / cpu,
        requests=requests,
        scores=scores,
    )


def has_lm_eval() -> bool:
    """Whether lm-evaluation-harness is importable (`make fidelity-env`)."""
    try:
        import lm_eval.models.huggingface  # noqa: F401
    except ImportError:
        return False
    return True


def compare(ours: Run, peer: Run) -> tuple[int, float]:
    """(items whose requests differ, largest log-likelihood difference) between two runs."""
    differ = sum(1 for key, reqs in ours.requests.items() if peer.requests.get(key) != reqs)
    diff = max(
        abs(a - b)
        for key, values in ours.scores.items()
        for a, b in zip(values, peer.scores[key], strict=True)
    )
    return differ + len(set(peer.requests) - set(ours.requests)), diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--per-subject", type=int, default=None, help="items per subject")
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16, help="both runners")
    # Two intra-op threads on a CPU shared with other jobs spin at every barrier (a 2-layer
    # model's forward took 30x longer under load average 10); one thread measures the work.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's progress bars
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # its notes on in-memory documents
    torch.set_num_threads(args.threads)
    model, tokenizer = load_model(args.model)
    model.eval()
    with torch.inference_mode():
        model(torch.tensor([[1, 2, 3]]))  # one-off start-up costs, paid by neither runner
    peer = has_lm_eval()
    print(
        f"model {args.model}, mmlu prompt format, {args.shots}-shot, batch {args.batch_size}, "
        f"torch threads {args.threads}; items/s by wall time, (×) by CPU time"
    )
    print(
        f"{'set':6} {'n':>4} {'ours items/s':>12} {'lm-eval items/s':>15} {'ours ×':>11} "
        f"{'ours acc':>8} {'lm-eval acc':>11} {'prompts differ':>14} {'max |Δ|':>8}"
    )
    for s, name in enumerate(args.sets):
        test, dev = (DATA / p for p in SETS[name])
        ids = {i.id for i in pick(load_mc(test).items, args.per_subject)}
        runs: dict[str, Run] = {}
        # Alternate which runner goes first, so a load change on the machine hits both.
        order = ["ours", "lm-eval"] if s % 2 == 0 else ["lm-eval", "ours"]
        for runner in order if peer else ["ours"]:
            if runner == "ours":
                runs[runner] = run_ours(
                    model, tokenizer, test, dev, ids, args.shots, args.batch_size
                )
            else:
                tasks = lm_eval_tasks(test, dev, ids, args.shots)
                runs[runner] = run_lm_eval(model, tokenizer, tasks, args.batch_size)
        ours = runs["ours"]
        if not peer:
            print(
                f"{name:6} {len(ids):>4} {ours.items_per_s:>12.2f} {'not installed':>15} "
                f"{'':>11} {ours.accuracy:>8.4f}   (make fidelity-env installs lm-eval)"
            )
            continue
        other = runs["lm-eval"]
        differ, diff = compare(ours, other)
        by_cpu = ours.items_per_cpu_s / other.items_per_cpu_s
        ratio = f"{ours.items_per_s / other.items_per_s:.2f} ({by_cpu:.2f})"
        print(
            f"{name:6} {len(ids):>4} {ours.items_per_s:>12.2f} {other.items_per_s:>15.2f} "
            f"{ratio:>11} {ours.accuracy:>8.4f} {other.accuracy:>11.4f} {differ:>14} {diff:>8.1e}"
        )


if __name__ == "__main__":
    main()
