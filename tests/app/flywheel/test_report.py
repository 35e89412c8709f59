"""The report page: one interval chart per metric (safety ones marked), bars for the figures."""

from __future__ import annotations

import re

from feilun.app.flywheel.report import render_html


def _interval(value: float) -> dict[str, float]:
    return {"value": value, "low": value - 0.05, "high": value + 0.05}


def _turn(number: int, status: str, refusal: float) -> dict[str, object]:
    return {
        "number": number,
        "status": status,
        "verdict": "passed" if status == "promoted" else "blocked",
        "target": "qa",
        "reason": None,
        "reasons": [] if status == "promoted" else ["xstest refusal rate 50.0% (need >= 95%)"],
        "candidate": f"base:handbook@{number}",
        "incumbent": "base@1",
        "rolled_back_at": None,
        "metrics": {
            "qa": {
                "kind": "qa",
                "metrics": {"f1": {"candidate": _interval(0.6), "incumbent": _interval(0.3)}},
            },
            "xstest": {
                "kind": "safety",
                "metrics": {
                    "refusal_rate": {"candidate": _interval(refusal), "incumbent": _interval(0.9)}
                },
            },
        },
        "training": {
            "dataset": "h@1",
            "rows": 100 * number,
            "seconds": 12.5,
            "tokens": 1000,
            "cost": 0.0,
        },
        "feedback": {"total": 40 * number, "curated": {}},
    }


def test_the_page_charts_every_metric_and_figure_without_scripts() -> None:
    summary = {
        "name": "handbook",
        "generated_at": "now",
        "turns": [_turn(1, "promoted", 0.95), _turn(2, "rejected", 0.5)],
    }
    html = render_html(summary)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", html)
    assert captions == [
        "qa f1",
        "Safety: xstest refusal_rate",
        "Training data (rows)",
        "Feedback volume (ratings)",
        "Training time (s)",
    ]  # no cost chart: no prices were set
    assert html.count("<circle") == 8  # 2 metrics x 2 turns x (incumbent, candidate)
    assert "qa f1 0.300 → 0.600" in html and "refusal rate 50.0%" in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
