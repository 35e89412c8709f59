"""`feilun demo` end to end with the packaged models: the handbook, then anyone's corpus.

Slow (minutes on a 2-core CPU): it trains SmolLM2-135M twice. The handbook run checks what
the demo promises: every step ran, a turn is promoted only when the gate measured a gain on
the held-out handbook questions, the report exists, and a second run reuses everything.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from feilun.app.demo import run_demo
from feilun.models.packaged import MINILM, SMOLLM2

INDUSTRY = Path(__file__).resolve().parents[3] / "shared" / "data" / "industry"
STEPS = ["ingest", "clean", "kb", "synth", "seed", "eval_files", "turn1", "feedback", "turn2"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        SMOLLM2.locate() is None or MINILM.locate() is None, reason="packaged models missing"
    ),
]


def _check_turns(result_turns: list[dict]) -> None:
    for turn in result_turns:
        assert turn["status"] in ("promoted", "rejected", "stopped"), turn
        if turn["status"] == "promoted":
            f1 = turn["metrics"]["handbook"]["metrics"]["f1"]
            assert f1["candidate"]["value"] > f1["incumbent"]["value"], turn


def test_demo_runs_the_flywheel_and_reruns_idempotently(tmp_path: Path) -> None:
    messages: list[str] = []
    result = run_demo(tmp_path / "ws", env={}, on_step=messages.append)
    assert [s.step for s in result.steps] == [*STEPS, "report"]
    assert any(m.startswith("[7/10] turn 1") for m in messages)
    _check_turns(result.turns)
    assert result.turns[0]["status"] == "promoted", result.turns[0]  # facts the base cannot know
    assert result.feedback["asked"] > 0 and result.feedback["down"] > 0
    assert set(result.rag) == {"no_rag", "rag"}
    assert result.report_path and Path(result.report_path).is_file()
    summary = json.loads(Path(result.summary_path).read_text(encoding="utf-8"))
    assert summary["turns"] == result.turns

    again = run_demo(tmp_path / "ws", env={})
    reused = {s.step for s in again.steps if s.reused}
    assert reused == set(STEPS) - {"ingest", "kb"}  # those two are no-ops on unchanged input
    assert again.turns == result.turns
    assert again.seconds < 120


@pytest.mark.skipif(not INDUSTRY.is_dir(), reason="../shared/data/industry is not here")
def test_demo_runs_on_your_own_corpus(tmp_path: Path) -> None:
    result = run_demo(tmp_path / "ws", env={}, corpus=INDUSTRY / "docs", qa=INDUSTRY / "qa.jsonl")
    assert result.name.startswith("demo-")
    assert [s.step for s in result.steps] == [*STEPS, "report"]
    _check_turns(result.turns)
    assert result.report_path and Path(result.report_path).is_file()
