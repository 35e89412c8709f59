"""The main job, `feilun demo`: the whole flywheel on the embedded default, start to finish.

ingest → clean → knowledge base → synthetic QA → seed set → eval files → turn 1 (train,
evaluate base vs tuned and RAG vs no-RAG, gate, promote) → serve in-process, simulated users
ask with the `openai` client and rate the answers from an answer key → turn 2 (curate the
feedback, train, evaluate, gate, promote or reject) → the report.

Re-running is idempotent: each step records its outputs and a fingerprint of its inputs in
`<workspace>/demo/<name>/state.json`, and a step whose inputs are unchanged is reused, not
redone (ingest still runs: it skips unchanged files itself). A turn that was interrupted is
resumed at its unfinished step. A changed corpus or question set is a new demo name, so it
never mixes with the old one. Delete the folder (or use a new workspace) to start afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from feilun.app import demo_prep
from feilun.app.demo_data import DemoItem, load_items, of_split, packaged_corpus
from feilun.app.demo_users import Exchange, feedback_round, tally
from feilun.app.flywheel import TurnResult, resume_turn, run_turn, write_report
from feilun.app.workspace import Workspace, init_workspace
from feilun.core.errors import ConfigError, FeilunError, NotFound
from feilun.models.packaged import MINILM, SMOLLM2

CHECKOUT = Path(__file__).resolve().parents[3]  # the repository this code runs from
TEMPLATE = Path("recipes/flywheel/demo.yaml")
CLEAN_RECIPE = Path("recipes/data/default.yaml")
GENERAL = Path(__file__).parent / "demo_corpus" / "general.jsonl"

OnStep = Callable[[str], None]


@dataclass
class StepTime:
    """One step of the demo: how long it took and whether its earlier result was reused."""

    step: str
    seconds: float
    reused: bool
    first_seconds: float | None  # what the run that made the reused result took
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoResult:
    """What the demo did, per step and per turn, and where the report is."""

    workspace: str
    name: str
    steps: list[StepTime]
    turns: list[dict[str, Any]]
    feedback: dict[str, Any]
    rag: dict[str, Any]
    report_path: str | None
    summary_path: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def _repo_file(relative: Path) -> Path:
    path = relative if relative.is_file() else CHECKOUT / relative
    if not path.is_file():
        raise ConfigError(
            f"{relative} not found (looked in {Path.cwd()} and {CHECKOUT})",
            "run `feilun demo` from a Feilun checkout (`make demo`), or pass --config",
        )
    return path.resolve()


def _digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        for file in sorted(
            p for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()
        ):
            h.update(file.name.encode() + file.read_bytes())
    return h.hexdigest()[:8]


class _State:
    """Per-step outputs and input fingerprints, saved after every step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.steps: dict[str, dict[str, Any]] = (
            json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        )

    def get(self, step: str, key: str) -> dict[str, Any] | None:
        entry = self.steps.get(step)
        return entry["outputs"] if entry and entry["key"] == key else None

    def put(self, step: str, key: str, outputs: dict[str, Any], seconds: float) -> None:
        self.steps[step] = {"key": key, "outputs": outputs, "seconds": seconds}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.steps, indent=1, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


class _Runner:
    """Runs steps in order: prints progress, times them, reuses recorded results."""

    def __init__(self, state: _State, on_step: OnStep, total: int) -> None:
        self.state, self.on_step, self.total = state, on_step, total
        self.times: list[StepTime] = []

    def step(
        self, name: str, what: str, run: Callable[[], dict[str, Any]], key: str | None = None
    ) -> dict[str, Any]:
        number = f"[{len(self.times) + 1}/{self.total}]"
        started = time.perf_counter()
        recorded = self.state.get(name, key) if key is not None else None
        if recorded is not None:
            self.on_step(f"{number} {what}: unchanged, reusing the earlier result")
            outputs = recorded
        else:
            self.on_step(f"{number} {what}")
            outputs = run()
        seconds = round(time.perf_counter() - started, 1)
        if recorded is None and key is not None:
            self.state.put(name, key, outputs, seconds)
        took = self.state.steps.get(name, {}).get("seconds") if recorded is not None else seconds
        self.times.append(StepTime(name, seconds, recorded is not None, took, outputs))
        self.on_step(f"      {name} done in {seconds} s")
        return outputs


def _configs(
    template: Path, folder: Path, name: str, alias: str, seed: str
) -> tuple[Path, Path, str]:
    """Turn configs for the two turns (turn 1 has no feedback to curate), and their key."""
    folder = folder.resolve()  # the configs name their files absolutely: read from anywhere
    raw = yaml.safe_load(template.read_text(encoding="utf-8"))
    for section, key in (("curate", "rules"), ("train", "recipe"), ("gate", "rules")):
        raw[section][key] = str((template.parent / raw[section][key]).resolve())
    suite = yaml.safe_load((template.parent / raw["evaluate"]["suite"]).read_text("utf-8"))
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite, allow_unicode=True), "utf-8")
    shutil.copyfile(GENERAL, folder / GENERAL.name)
    raw.update(name=name, alias=alias, evaluate={"suite": str(folder / "suite.yaml")})
    raw["train"]["datasets"] = [seed]
    raw["curate"]["dataset"] = f"{name}-feedback"
    key = demo_prep.fingerprint(raw, suite, GENERAL.read_bytes())
    second = folder / "turn-2.yaml"
    second.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    first = folder / "turn-1.yaml"
    first.write_text(yaml.safe_dump({**raw, "curate": None}, allow_unicode=True), "utf-8")
    return first, second, key


def _turn(ws: Workspace, runner: _Runner, number: int, config: Path, key: str) -> TurnResult:
    """Run turn `number`, or resume the flywheel's unfinished turn (an earlier demo's crash)."""
    name = yaml.safe_load(config.read_text(encoding="utf-8"))["name"]

    def step(message: str) -> None:
        runner.on_step(f"      turn {number}: {message}")

    def run() -> dict[str, Any]:
        try:
            return asdict(resume_turn(ws, name, on_step=step))
        except NotFound:  # nothing unfinished: a new turn
            return asdict(run_turn(ws, config, on_step=step))

    recorded = runner.state.steps.get(f"turn{number}")
    if recorded and recorded["outputs"].get("status") == "failed":
        del runner.state.steps[f"turn{number}"]  # resumed below, not reused
    what = f"turn {number}: " + ("curate → " if number > 1 else "") + "train → evaluate → gate"
    result = TurnResult(**runner.step(f"turn{number}", what, run, key))
    if result.status == "failed":
        raise FeilunError(
            f"turn {number} failed: {result.reason}",
            "fix the cause, then run `feilun demo` again: the turn resumes where it stopped",
        )
    return result


def _verdict(result: TurnResult) -> str:
    gate = result.gate or {}
    line = f"turn {result.number} {result.status}: candidate {result.candidate}"
    line += f" vs incumbent {result.incumbent}"
    for task, scores in gate.get("metrics", {}).items():
        for metric, pair in scores["metrics"].items():
            before, after = pair["incumbent"]["value"], pair["candidate"]["value"]
            line += f"\n        {task}/{metric}: {before:.3f} → {after:.3f}"
    if gate.get("reasons"):
        line += "\n        gate: " + "; ".join(gate["reasons"])
    elif result.reason:
        line += f"\n        {result.reason}"
    return line


def _rag_table(turn: TurnResult) -> dict[str, Any]:
    """Base vs tuned, without and with retrieved passages (turn 1's evaluation)."""
    metrics = (turn.gate or {}).get("metrics", {})
    table = {}
    for task, label in (("handbook", "no_rag"), ("handbook-rag", "rag")):
        pair = metrics.get(task, {}).get("metrics", {}).get("f1")
        if pair:
            table[label] = {role: pair[role]["value"] for role in ("incumbent", "candidate")}
    return table


def run_demo(
    explicit: Path | None = None,
    env: Mapping[str, str] = os.environ,
    on_step: OnStep = lambda _: None,
    *,
    corpus: Path | None = None,
    qa: Path | None = None,
    config: Path | None = None,
) -> DemoResult:
    """Run the whole flywheel on the demo corpus (or `corpus` with the question set `qa`)."""
    started = time.perf_counter()
    if (corpus is None) != (qa is None):
        raise ConfigError("--corpus and --qa go together", "pass both, or neither for the demo")
    docs, qa_path = (corpus, qa) if corpus and qa else packaged_corpus()
    if not docs.is_dir():
        raise ConfigError(f"corpus folder {docs} does not exist", "pass a folder of documents")
    items = load_items(qa_path)
    template = _repo_file(config or TEMPLATE)
    clean_recipe = _repo_file(CLEAN_RECIPE)
    raw = yaml.safe_load(template.read_text(encoding="utf-8"))
    name = raw["name"] if corpus is None else f"demo-{_digest(docs, qa_path)}"
    alias = raw["alias"] if corpus is None else f"{name}-prod"
    for model in (SMOLLM2, MINILM):
        if model.locate() is None:
            raise FeilunError(f"{model.name} is not installed", model.install_hint)

    on_step("[0] workspace")
    ws, _ = init_workspace(explicit, env)
    try:
        folder = ws.path / "demo" / name
        runner = _Runner(_State(folder / "state.json"), on_step, total=10)
        result = _run(ws, runner, items, docs, name, alias, template, clean_recipe)
    finally:
        ws.close()
    result.seconds = round(time.perf_counter() - started, 1)
    Path(result.summary_path).write_text(
        json.dumps(result.to_json(), indent=1, ensure_ascii=False), encoding="utf-8"
    )
    return result


def _run(
    ws: Workspace,
    runner: _Runner,
    items: list[DemoItem],
    docs: Path,
    name: str,
    alias: str,
    template: Path,
    clean_recipe: Path,
) -> DemoResult:
    folder = ws.path / "demo" / name
    fp = demo_prep.fingerprint
    ingested = runner.step(
        "ingest", f"ingest {docs}", lambda: demo_prep.ingest_corpus(ws, docs, name)
    )
    documents = ingested["documents"]
    cleaned = runner.step(
        "clean",
        f"clean with {clean_recipe.name}",
        lambda: demo_prep.clean_corpus(ws, name, clean_recipe, f"{name}-clean"),
        fp(documents, clean_recipe.read_bytes()),
    )
    kb = runner.step(
        "kb",
        "knowledge base",
        lambda: demo_prep.build_kb(ws, name, f"dataset:{cleaned['dataset']}"),
    )
    synth = runner.step(
        "synth",
        f"synthetic QA from English passages with {SMOLLM2.name}",
        lambda: demo_prep.synth_english(
            ws,
            name,
            f"{name}-synth",
            lambda done, total: runner.on_step(f"      passage {done}/{total}"),
        ),
        fp(documents, demo_prep.SYNTH),
    )
    train_items = of_split(items, "train")
    seed = runner.step(
        "seed",
        f"seed set: {len(train_items)} question-set items + {synth['rows']} synthetic pairs",
        lambda: demo_prep.seed_dataset(ws, items, synth["dataset"], f"{name}-seed"),
        fp([asdict(i) for i in train_items], synth["dataset"]),
    )
    files = runner.step(
        "eval_files",
        f"held-out eval files ({len(of_split(items, 'eval'))} items; RAG contexts from {kb['kb']})",
        lambda: demo_prep.eval_files(ws, items, kb["kb"], folder),
        fp([asdict(i) for i in of_split(items, "eval")], kb["kb"]),
    )
    first, second, configs = _configs(template, folder, name, alias, seed["dataset"])
    configs = fp(configs, files)
    turn1 = _turn(ws, runner, 1, first, configs)
    runner.on_step("      " + _verdict(turn1).replace("\n", "\n      "))

    users = of_split(items, "users")
    served = alias if ws.models.alias(alias) else turn1.incumbent or SMOLLM2.name

    def ask() -> dict[str, Any]:
        def show(e: Exchange) -> None:
            mark = "👍" if e.rating == "up" else "👎"
            runner.on_step(f"      {mark} {e.question[:60]} → {e.answer[:50]!r} (key {e.key!r})")

        exchanges = feedback_round(ws, served, users, round_id=turn1.id, on_item=show)
        return {
            "model": served,
            **tally(exchanges),
            "rated_earlier": len(users) - len(exchanges),  # by a run of this round that crashed
            "exchanges": [e.to_json() for e in exchanges],
        }

    feedback = runner.step(
        "feedback",
        f"serve {served}: {len(users)} simulated users ask with the openai client and rate",
        ask,
        fp(turn1.id, [asdict(i) for i in users]),
    )
    turn2 = _turn(ws, runner, 2, second, fp(configs, feedback["exchanges"]))
    runner.on_step("      " + _verdict(turn2).replace("\n", "\n      "))

    def report() -> dict[str, Any]:
        out = Path(turn2.report_path).parent if turn2.report_path else folder / "report"
        return {"path": str(write_report(ws, name, out))}

    written = runner.step("report", "the report across turns", report)
    return DemoResult(
        workspace=str(ws.path.resolve()),
        name=name,
        steps=runner.times,
        turns=[_turn_summary(t) for t in (turn1, turn2)],
        feedback={k: v for k, v in feedback.items() if k != "exchanges"},
        rag=_rag_table(turn1),
        report_path=written["path"],
        summary_path=str(folder / "summary.json"),
        seconds=0.0,
    )


def _turn_summary(result: TurnResult) -> dict[str, Any]:
    gate = result.gate or {}
    return {
        "turn": result.number,
        "status": result.status,
        "candidate": result.candidate,
        "incumbent": result.incumbent,
        "verdict": gate.get("verdict"),
        "metrics": gate.get("metrics", {}),
        "reasons": gate.get("reasons", []),
        "reason": result.reason,
        "report_path": result.report_path,
    }
