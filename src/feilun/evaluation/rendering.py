"""An EvalReport for people: one self-contained HTML page (inline SVG, no scripts) or Markdown.

Both render the same blocks: a header of settings, each task's metrics with 95% intervals, a
bar chart with interval whiskers (HTML only) and the items it got wrong, and, given a second
report, per-task deltas with significance and the items that flipped. All user text (prompts,
generations, names) is escaped: a generation holding `<script>` shows as text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feilun.core.charts import Point, interval_bars
from feilun.core.errors import FeilunError
from feilun.evaluation.compare import DELTA_COLUMNS, compare_payloads, delta_rows
from feilun.evaluation.items import LETTERS, load_mc, load_qa
from feilun.evaluation.judge import RUBRIC_TOP_MARK, load_judged
from feilun.evaluation.parity import load_parity
from feilun.evaluation.rag import load_rag
from feilun.evaluation.reports import metric_rows
from feilun.evaluation.safety import load_prompts

if TYPE_CHECKING:
    from feilun.core.records import EvalReport

MAX_ITEMS_LISTED = 20
MAX_CELL_CHARS = 400
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;vertical-align:top;text-align:left}"
    "figure{margin:1em 0}figcaption{font-weight:600}"
)


@dataclass(frozen=True)
class Shown:
    """A report to show: its catalog record and its artifact body."""

    report: EvalReport
    payload: dict[str, Any]


@dataclass(frozen=True)
class Heading:
    """A section title."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Table:
    """Columns and rows of plain text (a newline in a cell is a line break)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Chart:
    """Inline SVG markup, built from escaped text (HTML only)."""

    svg: str


Block = Heading | Table | Chart | str  # str: a paragraph


def _mc_prompts(path: Path) -> tuple[str, dict[str, str]]:
    loaded = load_mc(path)
    return loaded.sha256, {
        i.id: "\n".join([i.question, *(f"{LETTERS[k]}. {c}" for k, c in enumerate(i.choices))])
        for i in loaded.items
    }


def _qa_prompts(path: Path) -> tuple[str, dict[str, str]]:
    loaded = load_qa(path)
    return loaded.sha256, {
        i.id: f"{i.question}\n(passage: {i.context})" if i.context else i.question
        for i in loaded.items
    }


def _safety_prompts(path: Path) -> tuple[str, dict[str, str]]:
    loaded = load_prompts(path)
    return loaded.sha256, {i.id: i.prompt for i in loaded.items}


def _rag_prompts(path: Path) -> tuple[str, dict[str, str]]:
    loaded = load_rag(path)
    return loaded.sha256, {i.qa.id: i.qa.question for i in loaded.items}


def _judge_prompts(path: Path) -> tuple[str, dict[str, str]]:
    loaded = load_judged(path, "rubric")  # rubric rows: every row pairwise mode reads, and more
    return loaded.sha256, {i.id: i.question for i in loaded.items}


def _parity_prompts(path: Path) -> tuple[str, dict[str, str]]:
    loaded = load_parity(path)
    return loaded.sha256, {i.id: i.prompt for i in loaded.items}


#: Task kind -> reader of its file's (sha256, item id -> question text).
PROMPT_READERS: dict[str, Callable[[Path], tuple[str, dict[str, str]]]] = {
    "mc": _mc_prompts,
    "qa": _qa_prompts,
    "safety": _safety_prompts,
    "rag": _rag_prompts,
    "judge": _judge_prompts,
    "parity": _parity_prompts,
}


def item_prompts(task: dict[str, Any]) -> dict[str, str]:
    """Item id -> its question, read back from the task's file; {} if it is gone or changed.

    The artifact pins the file by sha256 rather than copying its text, so a file edited since
    the run shows no prompts instead of wrong ones.
    """
    read = PROMPT_READERS.get(task["kind"])
    if read is None:
        return {}
    try:
        sha256, prompts = read(Path(task["path"]))
    except (FeilunError, OSError):
        return {}
    return prompts if sha256 == task["sha256"] else {}


def comparison(shown: Shown, against: Shown) -> dict[str, Any]:
    """`shown` minus `against`, task by task (`compare.compare_payloads`), with report ids."""
    result = compare_payloads(against.payload, shown.payload, seed=int(against.payload["seed"]))
    result["a"]["report"], result["b"]["report"] = against.report.id, shown.report.id
    return result


def _top_mark(task: dict[str, Any]) -> float:
    """The best score an item of `task` can get: 1, or a rubric judge's top mark."""
    is_rubric = task["kind"] == "judge" and task.get("config", {}).get("mode") == "rubric"
    return RUBRIC_TOP_MARK if is_rubric else 1.0


def _answer(item: dict[str, Any]) -> str:
    if item.get("error"):
        return f"error: {item['error']}"
    parts = [f"[{item['pred']}]"] if item.get("pred") is not None else []
    if item.get("generation") is not None:
        parts.append(str(item["generation"]))
    if item.get("refused") is not None:
        parts.append("(refused)" if item["refused"] else "(answered)")
    if "served" in item:  # parity: the two answers that should agree
        parts.append(f"in process: {item['in_process']} | served: {item['served']}")
    return " ".join(parts) or "—"


def _reference(item: dict[str, Any]) -> str:
    if "references" in item:
        return " | ".join(str(r) for r in item["references"])
    if "reference" in item:
        return str(item["reference"])
    if "should_refuse" in item:
        return "refuse" if item["should_refuse"] else "answer"
    return str(item.get("gold", ""))


def _header(shown: Shown) -> Table:
    report, payload = shown.report, shown.payload
    tasks = payload["tasks"]

    def decoding(task: dict[str, Any]) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in task["decoding"].items() if v is not None)
        return f"{task['name']}: {task['scoring']}" + (f" ({settings})" if settings else "")

    def contamination(task: dict[str, Any]) -> str:
        found = task.get("contamination")
        if not found:
            return f"{task['name']}: not checked"
        clean = found["metrics_clean"].get(task["primary"], {}).get("value")
        without = f"; {task['primary']} without them {clean:.4f}" if clean is not None else ""
        return (
            f"{task['name']}: {found['n_flagged']} of {task['n']} items share "
            f"{found['ngram']}-grams with {', '.join(found['datasets'])}{without}"
        )

    rows = [
        ["report", f"{report.ref} ({report.id})"],
        ["model", report.model],
        ["suite", payload["suite"]],
        ["created", report.created_at.isoformat(timespec="seconds")],
        ["wall time", f"{payload['wall_time_s']:.1f} s"],
        ["seed", str(payload["seed"])],
        ["decoding", "\n".join(decoding(t) for t in tasks)],
        ["contamination", "\n".join(contamination(t) for t in tasks)],
        ["environment", ", ".join(f"{k} {v}" for k, v in payload.get("environment", {}).items())],
    ]
    return Table(["setting", "value"], rows)


def _point(task: dict[str, Any] | None, metric: str) -> Point:
    value = (task or {}).get("metrics", {}).get(metric)
    return (value["value"], value["low"], value["high"]) if value else None


def _series(
    shown: Shown, against: Shown | None, points: Callable[[dict[str, dict[str, Any]]], list[Point]]
) -> dict[str, list[Point]]:
    """Chart series: the other report's first (A), then this one's (B)."""
    reports = [against, shown] if against else [shown]
    return {s.report.ref: points({t["name"]: t for t in s.payload["tasks"]}) for s in reports}


def _task_blocks(
    task: dict[str, Any], prompts: dict[str, str], shown: Shown, against: Shown | None
) -> list[Block]:
    metrics = list(task["metrics"])
    series = _series(
        shown, against, lambda tasks: [_point(tasks.get(task["name"]), m) for m in metrics]
    )
    blocks: list[Block] = [
        Heading(f"Task {task['name']} ({task['kind']})"),
        f"{task['n']} items scored, {task['errors']} could not be scored, "
        f"{len(task['skipped'])} rows skipped; primary metric {task['primary']}; "
        f"file {task['path']} ({task['sha256']}).",
        Table(["metric", "score", "95% CI"], metric_rows(task)),
        Chart(interval_bars(f"{task['name']}: metrics with 95% intervals", metrics, series)),
    ]
    scored = [i for i in task["items"] if isinstance(i.get("score"), int | float)]
    full = _top_mark(task)
    wrong = sorted((i for i in scored if i["score"] < full), key=lambda i: float(i["score"]))
    if not wrong:
        return [*blocks, f"Every scored item has full marks ({full:g})."]
    listed = "all" if len(wrong) <= MAX_ITEMS_LISTED else f"the first {MAX_ITEMS_LISTED}"
    note = "" if prompts else " (prompts not shown: the task file is not readable here, or changed)"
    rows = [
        [
            str(i["id"]),
            prompts.get(str(i["id"]), ""),
            _answer(i),
            _reference(i),
            f"{i['score']:.3f}",
        ]
        for i in wrong[:MAX_ITEMS_LISTED]
    ]
    return [
        *blocks,
        Heading(f"{task['name']}: wrong items", 3),
        f"{len(wrong)} items scored below {full:g}, lowest first; {listed} of them{note}:",
        Table(["id", "prompt", "answer", "reference", task["primary"]], rows),
    ]


def _comparison_blocks(
    shown: Shown, against: Shown, prompts: dict[str, dict[str, str]]
) -> list[Block]:
    result = comparison(shown, against)
    a, b = against.report.ref, shown.report.ref
    blocks: list[Block] = [
        Heading(f"Compared with {a}"),
        f"A = {a} ({against.report.model}), B = {b} ({shown.report.model}); deltas are B minus A "
        "on paired items with a paired-bootstrap 95% interval; p is McNemar's exact test for "
        "right/wrong scores, else the paired bootstrap's.",
        Table(DELTA_COLUMNS, delta_rows(result)),
    ]
    blocks += [
        f"Task {name} is in only one report; not compared."
        for name in result["only_in_a"] + result["only_in_b"]
    ]
    for task in result["tasks"]:
        flipped = task["flipped"]
        flips = [("→ right", f) for f in flipped["to_right"]] + [
            ("→ wrong", f) for f in flipped["to_wrong"]
        ]
        if not flips:
            continue
        texts = prompts.get(task["task"], {})
        rows = [
            [
                str(f["id"]),
                way,
                texts.get(str(f["id"]), ""),
                _answer(f["a"]),
                _answer(f["b"]),
                _reference(f["b"]),
            ]
            for way, f in flips
        ]
        blocks += [
            Heading(f"{task['task']}: items that flipped", 3),
            f"{flipped['n_to_right']} to right, {flipped['n_to_wrong']} to wrong "
            f"({task['metric']} changed by at least 0.5).",
            Table(["id", "flip", "prompt", f"A: {a}", f"B: {b}", "reference"], rows),
        ]
    return blocks


def report_blocks(shown: Shown, against: Shown | None = None) -> list[Block]:
    """Everything a page shows, in order."""
    tasks = shown.payload["tasks"]
    prompts = {t["name"]: item_prompts(t) for t in tasks}
    series = _series(
        shown, against, lambda found: [_point(found.get(t["name"]), t["primary"]) for t in tasks]
    )
    blocks: list[Block] = [
        Heading(f"EvalReport {shown.report.ref}: {shown.report.model}", 1),
        _header(shown),
        Heading("Scores"),
        Chart(
            interval_bars(
                "Primary metric per task, 95% intervals", [t["name"] for t in tasks], series
            )
        ),
    ]
    for task in tasks:
        blocks += _task_blocks(task, prompts[task["name"]], shown, against)
    if against is not None:
        blocks += _comparison_blocks(shown, against, prompts)
    return blocks


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def _html(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Chart):
        return block.svg
    if isinstance(block, Table):
        head = "".join(f"<th>{escape(c)}</th>" for c in block.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{escape(_clip(c)).replace(chr(10), '<br>')}</td>" for c in row)
            + "</tr>"
            for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<p>{escape(block)}</p>"


def render_html(shown: Shown, against: Shown | None = None) -> str:
    """One self-contained HTML page: no scripts, no external files."""
    title = escape(f"EvalReport {shown.report.ref}")
    body = "".join(_html(b) for b in report_blocks(shown, against))
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>\n"
    )


def _md_cell(text: str) -> str:
    return escape(_clip(text), quote=False).replace("|", "\\|").replace("\n", "<br>")


def _markdown(block: Block) -> str:
    if isinstance(block, Heading):
        return "#" * block.level + " " + _md_cell(block.text)
    if isinstance(block, Chart):
        return ""
    if isinstance(block, Table):
        lines = ["| " + " | ".join(_md_cell(c) for c in block.columns) + " |"]
        lines.append("|" + "---|" * len(block.columns))
        lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        return "\n".join(lines)
    return escape(block, quote=False)


def render_markdown(shown: Shown, against: Shown | None = None) -> str:
    """The same content as the HTML page, as Markdown tables (no charts)."""
    parts = [_markdown(b) for b in report_blocks(shown, against)]
    return "\n\n".join(p for p in parts if p) + "\n"
