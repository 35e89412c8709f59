"""`feilun eval mc|qa|run|show|report|list|compare|gate`: evaluate, report, compare, gate."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

if TYPE_CHECKING:
    from feilun.app.workspace import Workspace
    from feilun.core.records import EvalReport
    from feilun.evaluation.rendering import Shown
    from feilun.evaluation.suites import EvalContext, Suite, SuiteProgress

app = typer.Typer(
    help="Evaluate models on tasks and suites; compare reports; gate promotions.",
    no_args_is_help=True,
)

#: Exit code of `feilun eval gate` when the candidate is blocked (errors exit 1).
BLOCKED_EXIT = 3

Model = Annotated[
    str, typer.Option("--model", "-m", help="Model reference: name, name@2, base:adapter, alias.")
]
Limit = Annotated[
    int | None, typer.Option("--limit", min=1, help="Score only the first N items of each task.")
]
ReportRef = Annotated[str, typer.Argument(help="Report id (evr_…) or suite@version.")]
Contamination = Annotated[
    list[str] | None,
    typer.Option(
        "--contamination",
        help="Dataset (name@version) to check items against; repeatable. An adapter's own "
        "training dataset is always checked.",
        show_default=False,
    ),
]


def _context(ws: Workspace) -> EvalContext:
    from feilun.app.answering import kb_access_opener
    from feilun.evaluation.suites import EvalContext

    return EvalContext(ws.catalog, ws.artifacts, ws.models, open_rag=kb_access_opener(ws))


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[SuiteProgress | None]:
    """A Rich bar per task on stderr: items done, elapsed, ETA."""
    if quiet:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True, file=sys.stderr)) as bar:
        tasks: dict[str, Any] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=total)
            bar.update(tasks[name], completed=done, total=total)

        yield update


def _run(
    workspace: Path | None,
    suite: Suite,
    model: str,
    limit: int | None,
    quiet: bool,
    base: Path | None = None,
) -> tuple[EvalReport, dict[str, Any]]:
    from feilun.app.workspace import opened
    from feilun.evaluation.reports import load_payload
    from feilun.evaluation.suites import run_suite

    with opened(workspace) as ws, _progress_bar(quiet) as progress:
        report = run_suite(_context(ws), suite, model, base=base, limit=limit, progress=progress)
        return report, load_payload(ws.artifacts, report)


def _task_summary(task: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {m: v["value"] for m, v in task["metrics"].items()}
    summary.update(
        task=task["name"],
        kind=task["kind"],
        n=task["n"],
        errors=task["errors"],
        skipped=len(task["skipped"]),
        scoring=task["scoring"],
        intervals={m: [v["low"], v["high"]] for m, v in task["metrics"].items()},
        wall_time_s=task["wall_time_s"],
    )
    if task["kind"] == "mc":
        summary["subjects"] = task["subjects"]
    if task.get("contamination"):
        found = task["contamination"]
        summary["contamination"] = {
            "datasets": found["datasets"],
            "n_flagged": found["n_flagged"],
            "clean": {m: v["value"] for m, v in found["metrics_clean"].items()},
        }
    return summary


def _print_report(report: EvalReport, payload: dict[str, Any]) -> None:
    from feilun.evaluation.reports import metric_rows

    rows = [
        [task["name"], *row, task["n"], task["errors"], len(task["skipped"])]
        for task in payload["tasks"]
        for row in metric_rows(task)
    ]
    title = f"{report.ref} ({report.id}) · {report.model} · {payload['wall_time_s']:.1f} s"
    print_table(title, ["task", "metric", "score", "95% CI", "n", "errors", "skipped"], rows)
    for task in payload["tasks"]:
        for skipped in task["skipped"][:5]:
            typer.echo(f"skipped {skipped['file']}:{skipped['line']}: {skipped['reason']}")
        if len(task["skipped"]) > 5:
            typer.echo(f"… and {len(task['skipped']) - 5} more skipped rows in {task['name']}")
        found = task.get("contamination")
        if found:
            clean = ", ".join(f"{m} {v['value']:.4f}" for m, v in found["metrics_clean"].items())
            typer.echo(
                f"{task['name']}: {found['n_flagged']} items overlap "
                f"{', '.join(found['datasets'])} ({found['ngram']}-grams); without them: {clean}"
            )


def _print_single(report: EvalReport, payload: dict[str, Any], json: bool) -> None:
    if json:
        print_json(
            {"report": report.id, "ref": report.ref, "model": report.model}
            | (_task_summary(payload["tasks"][0]))
        )
        return
    _print_report(report, payload)


@app.command("mc")
def mc(
    file: Annotated[Path, typer.Argument(help="CSV (C-Eval/CMMLU/MMLU layout), JSONL or folder.")],
    model: Model,
    prompt_format: Annotated[
        str, typer.Option("--format", help="Prompt format: mmlu (lm-eval's), ceval, or auto.")
    ] = "auto",
    shots: Annotated[int, typer.Option("--shots", min=0, max=10, help="Few-shot examples.")] = 0,
    fewshot: Annotated[
        Path | None,
        typer.Option("--fewshot", help="File of few-shot examples (default: FILE itself)."),
    ] = None,
    scoring: Annotated[
        str, typer.Option("--scoring", help="loglikelihood (local), generate, or auto.")
    ] = "auto",
    limit: Limit = None,
    contamination: Contamination = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Multiple-choice accuracy of MODEL on one file (per subject and macro averaged)."""
    from feilun.evaluation.suites import single_task_suite

    suite = single_task_suite(
        "mc",
        file,
        contamination,
        format=prompt_format,
        shots=shots,
        fewshot_path=str(fewshot) if fewshot else None,
        scoring=scoring,
    )
    report, payload = _run(workspace, suite, model, limit, json)
    _print_single(report, payload, json)


@app.command("qa")
def qa(
    file: Annotated[Path, typer.Argument(help="SQuAD-style JSON, or JSONL with question/answers.")],
    model: Model,
    limit: Limit = None,
    contamination: Contamination = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """QA exact match, F1 and "contains the reference" of MODEL on one file."""
    from feilun.evaluation.suites import single_task_suite

    suite = single_task_suite("qa", file, contamination)
    report, payload = _run(workspace, suite, model, limit, json)
    _print_single(report, payload, json)


@app.command("run")
def run(
    suite_file: Annotated[Path, typer.Argument(help="Suite YAML, e.g. recipes/eval/dev.yaml.")],
    model: Model,
    limit: Limit = None,
    contamination: Contamination = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Run every task of a suite against MODEL and store the EvalReport."""
    from feilun.evaluation.suites import load_suite

    suite, base = load_suite(suite_file)
    if contamination:
        suite = suite.model_copy(update={"contamination": [*suite.contamination, *contamination]})
    report, payload = _run(workspace, suite, model, limit, json, base)
    if json:
        print_json(
            {"report": report.id, "ref": report.ref, "model": report.model}
            | {"wall_time_s": payload["wall_time_s"]}
            | {"tasks": [_task_summary(t) for t in payload["tasks"]]}
        )
        return
    _print_report(report, payload)


@app.command("show")
def show(
    report_ref: ReportRef, workspace: options.Workspace = None, json: options.Json = False
) -> None:
    """Scores, intervals, settings and skipped rows of one report."""
    from feilun.app.workspace import opened
    from feilun.evaluation.reports import find_report, load_payload, summarize

    with opened(workspace) as ws:
        report = find_report(ws.catalog, report_ref)
        payload = load_payload(ws.artifacts, report)
    if json:
        print_json(summarize(report, payload))
        return
    _print_report(report, payload)


@app.command("list")
def list_reports(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Every report, newest first."""
    from feilun.app.workspace import opened
    from feilun.evaluation.reports import list_reports as find

    with opened(workspace) as ws:
        reports = find(ws.catalog)
    if json:
        print_json([r.model_dump(mode="json") for r in reports])
        return
    rows = [
        (r.id, r.ref, r.model, ", ".join(f"{k}={v:.3f}" for k, v in r.scores.items()))
        for r in reports
    ]
    print_table("eval reports", ["id", "suite", "model", "scores"], rows)


def _shown(workspace: Path | None, *refs: str) -> list[Shown]:
    from feilun.app.workspace import opened
    from feilun.evaluation.rendering import Shown
    from feilun.evaluation.reports import find_report, load_payload

    with opened(workspace) as ws:
        reports = [find_report(ws.catalog, ref) for ref in refs]
        return [Shown(r, load_payload(ws.artifacts, r)) for r in reports]


@app.command("report")
def report(
    report_ref: ReportRef,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="Write one self-contained HTML page (charts, no scripts)."),
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write the same content as Markdown.")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option("--against", help="Another report: add deltas (this minus it) and flips."),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """A report for people: settings, scores with intervals, charts, wrong and flipped items.

    Without --html or --markdown the Markdown is printed; --json prints the summary and
    per-task metrics instead (and the comparison with --against).
    """
    from feilun.core.files import write_atomically
    from feilun.evaluation.rendering import comparison, render_html, render_markdown
    from feilun.evaluation.reports import summarize

    shown, *others = _shown(workspace, report_ref, *([against] if against else []))
    other = others[0] if others else None
    for path, render in ((html, render_html), (markdown, render_markdown)):
        if path is not None:
            write_atomically(path, render(shown, other))
            if not json:
                typer.echo(f"wrote {path}")
    if json:
        summary = summarize(shown.report, shown.payload)
        if other is not None:
            summary["comparison"] = comparison(shown, other)
        print_json(summary)
    elif html is None and markdown is None:
        typer.echo(render_markdown(shown, other), nl=False)


@app.command("compare")
def compare(
    report_a: ReportRef,
    report_b: Annotated[str, typer.Argument(help="The report compared with A (B minus A).")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Per-task deltas (B minus A) with paired significance, and the items that flipped."""
    from feilun.evaluation.compare import DELTA_COLUMNS, delta_rows
    from feilun.evaluation.rendering import comparison

    a, b = _shown(workspace, report_a, report_b)
    result = comparison(b, a)
    if json:
        print_json(result)
        return
    print_table(f"{a.report.id} → {b.report.id}", DELTA_COLUMNS, delta_rows(result))
    for name in result["only_in_a"] + result["only_in_b"]:
        typer.echo(f"task {name} is in only one report; not compared")


@app.command("gate")
def gate(
    candidate: Annotated[str, typer.Option("--candidate", help="Candidate's report id.")],
    incumbent: Annotated[str, typer.Option("--incumbent", help="Incumbent's report id.")],
    rules: Annotated[
        Path, typer.Option("--rules", help="Rules YAML, e.g. recipes/eval/gate.yaml.")
    ],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Pass or block a promotion; exit 0 on pass, 3 when blocked (1 on errors)."""
    from feilun.evaluation.gate import evaluate_gate, load_rules

    gate_rules = load_rules(rules)
    cand, inc = _shown(workspace, candidate, incumbent)
    verdict = evaluate_gate(gate_rules, cand.payload, inc.payload)
    verdict["candidate_report"], verdict["incumbent_report"] = cand.report.id, inc.report.id
    if json:
        print_json(verdict)
    else:
        typer.echo("PASS" if verdict["passed"] else "BLOCKED")
        for check in verdict["checks"]:
            typer.echo(f"  {'ok  ' if check['passed'] else 'FAIL'} {check['detail']}")
    if not verdict["passed"]:
        raise typer.Exit(BLOCKED_EXIT)
