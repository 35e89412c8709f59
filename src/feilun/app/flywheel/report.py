"""The flywheel report across every turn of a name: `report.html` (inline SVG) and `report.json`.

Read from the turns' state alone: gate metrics with their 95% intervals, safety metrics,
training data growth, feedback volume, training time and cost, and each turn's verdict.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from feilun.app.flywheel.turns import Turn, list_turns
from feilun.app.workspace import Workspace
from feilun.core.charts import bar_chart, interval_chart
from feilun.core.errors import NotFound
from feilun.core.files import write_atomically
from feilun.core.records import utc_now

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
    "figure{display:inline-block;margin:1em}figcaption{font-weight:600}"
    ".promoted{color:#2ca02c}.rejected,.failed{color:#d62728}.stopped{color:#b8860b}"
)


def turn_summary(turn: Turn) -> dict[str, Any]:
    """One turn as the report shows it."""
    train, gate, curate = turn.outputs("train"), turn.outputs("gate"), turn.outputs("curate")
    promoted = turn.outputs("promote")
    return {
        "number": turn.number,
        "id": turn.id,
        "status": turn.status,
        "verdict": gate.get("verdict"),
        "target": gate.get("target"),
        "reason": turn.error,
        "reasons": gate.get("reasons", []),
        "candidate": train.get("candidate"),
        "incumbent": turn.outputs("evaluate").get("incumbent"),
        "rolled_back_at": promoted.get("rolled_back_at"),
        "metrics": gate.get("metrics", {}),
        "training": {k: train.get(k) for k in ("dataset", "rows", "seconds", "tokens", "cost")},
        "feedback": {
            "total": curate.get("feedback_total", train.get("feedback_total")),
            "curated": curate.get("counts", {}),
        },
        "started_at": turn.started_at.isoformat() if turn.started_at else None,
        "finished_at": turn.finished_at.isoformat() if turn.finished_at else None,
    }


def write_report(workspace: Workspace, name: str, out_dir: Path) -> Path:
    """Write the report of every turn of `name` into `out_dir`; the HTML file's path."""
    turns = list_turns(workspace.database, name)
    if not turns:
        raise NotFound(f"no flywheel turns named {name!r}", "see `feilun flywheel list`")
    summary = {
        "name": name,
        "generated_at": utc_now().isoformat(),
        "turns": [turn_summary(t) for t in turns],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "report.json", json.dumps(summary, ensure_ascii=False, indent=2))
    html = out_dir / "report.html"
    write_atomically(html, render_html(summary))
    return html


def render_html(summary: dict[str, Any]) -> str:
    """The HTML page of a report summary."""
    turns = summary["turns"]
    labels = [f"#{t['number']}" for t in turns]
    charts = [_metric_chart(task, metric, labels, turns) for task, metric in _metric_keys(turns)]
    for title, unit, section, key in (
        ("Training data", "rows", "training", "rows"),
        ("Feedback volume", "ratings", "feedback", "total"),
        ("Training time", "s", "training", "seconds"),
        ("Training cost", "", "training", "cost"),
    ):
        values = [float(t[section][key] or 0) for t in turns]
        if any(values):
            charts.append(bar_chart(title, labels, values, unit))
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>Flywheel {escape(summary['name'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>Flywheel {escape(summary['name'])}</h1>"
        f"<p>{len(turns)} turn(s); generated {escape(summary['generated_at'])}. "
        "Metrics are the candidate's and the incumbent's on the same suite, with 95% "
        "bootstrap intervals.</p>"
        f"{_table(turns)}<h2>Charts</h2>{''.join(charts)}</body></html>"
    )


def _metric_keys(turns: list[dict[str, Any]]) -> list[tuple[str, str]]:
    keys: dict[tuple[str, str], None] = {}
    for turn in turns:
        for task, found in turn["metrics"].items():
            keys.update(dict.fromkeys((task, metric) for metric in found["metrics"]))
    return list(keys)


def _metric_chart(task: str, metric: str, labels: list[str], turns: list[dict[str, Any]]) -> str:
    def points(role: str) -> list[tuple[float, float, float] | None]:
        out: list[tuple[float, float, float] | None] = []
        for turn in turns:
            value = turn["metrics"].get(task, {}).get("metrics", {}).get(metric, {}).get(role)
            out.append((value["value"], value["low"], value["high"]) if value else None)
        return out

    series = {"incumbent": points("incumbent"), "candidate": points("candidate")}
    top = max([p[2] for s in series.values() for p in s if p] + [1.0])
    kind = next((t["metrics"][task]["kind"] for t in turns if task in t["metrics"]), "")
    prefix = "Safety: " if kind == "safety" else ""
    return interval_chart(f"{prefix}{task} {metric}", labels, series, top)


def _table(turns: list[dict[str, Any]]) -> str:
    head = (
        "<tr><th>turn</th><th>status</th><th>candidate</th><th>incumbent</th><th>target</th>"
        "<th>training rows</th><th>feedback</th><th>training s</th><th>cost</th><th>why</th></tr>"
    )
    rows = []
    for t in turns:
        why = "; ".join(t["reasons"]) or t["reason"] or ""
        if t["rolled_back_at"]:
            why = f"rolled back {t['rolled_back_at']}" + (f"; {why}" if why else "")
        cells = (
            f"#{t['number']}",
            t["status"],
            t["candidate"] or "",
            t["incumbent"] or "",
            _target(t),
            _cell(t["training"]["rows"]),
            _cell(t["feedback"]["total"]),
            _cell(t["training"]["seconds"]),
            _cell(t["training"]["cost"] or None),
            why,
        )
        tds = "".join(f"<td>{escape(str(c))}</td>" for c in cells)
        rows.append(f'<tr class="{escape(t["status"])}">{tds}</tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _target(turn: dict[str, Any]) -> str:
    """`task metric incumbent → candidate` of the gate's target task."""
    found = turn["metrics"].get(turn["target"] or "", {}).get("metrics", {})
    return "; ".join(
        f"{turn['target']} {metric} {v['incumbent']['value']:.3f} → {v['candidate']['value']:.3f}"
        for metric, v in found.items()
    )
