"""A turn that starts from feedback: curated SFT rows join the training data, and the curated
eval items (never trained on) become one more task both models are scored on.
"""

from __future__ import annotations

from pathlib import Path

from feilun.app.flywheel import run_turn
from feilun.app.flywheel.turns import latest_turn
from feilun.app.workspace import Workspace
from feilun.serving.accounts import Accounts
from feilun.serving.feedback import FeedbackIn, FeedbackStore
from feilun.serving.gateway import Outcome
from feilun.serving.ledger import SqlLedger
from feilun.serving.limits.memory import MemoryLimiter

from .conftest import RECIPES, tiny_config

CORRECTED = [
    ("How long may a leak report wait?", "Not at all.", "Thirty minutes at most."),
    ("Who pays for a new meter?", "The city.", "The customer pays."),
    ("When are regulators serviced?", "Never.", "Every six months."),
    ("What colour are gas pipes painted?", "Blue.", "Yellow."),
    ("燃气泄漏报修多久到场？", "一天。", "三十分钟内。"),
    ("谁负责更换燃气表？", "用户自己。", "燃气公司。"),
]
LIKED = [("What is the emergency number?", "Call 96777.")]


def _serve_and_rate(ws: Workspace) -> None:
    """Traces as the gateway writes them, then the users' votes and corrections."""
    accounts = Accounts(ws.database)
    accounts.create_tenant("acme")
    secret, _ = accounts.create_key("acme")
    ledger = SqlLedger(ws.database, accounts, MemoryLimiter(), cache_ttl_s=0)
    store = FeedbackStore(ws.database)
    rated = [(q, a, "down", c) for q, a, c in CORRECTED] + [(q, a, "up", None) for q, a in LIKED]
    for question, answer, rating, correction in rated:
        admission = ledger.admit(ledger.authenticate(f"Bearer {secret}"), "tiny", 10)
        request = {"model": "prod", "messages": [{"role": "user", "content": question}]}
        response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]}
        ledger.settle(
            admission,
            Outcome("tiny@1", None, request, response, 5, 5, "tokenizer", "ok", "chat.completions"),
        )
        entry = FeedbackIn(trace_id=admission.trace_id, rating=rating, corrected_answer=correction)
        store.record(entry, None, "operator")


def test_curated_rows_are_trained_on_and_curated_eval_items_scored(
    ws: Workspace, tmp_path: Path
) -> None:
    _serve_and_rate(ws)
    recipe = str(RECIPES / "../train/tiny_sft_lora.yaml")
    short = {"train.epochs": 2, "train.warmup_steps": 0}
    config = tiny_config(
        tmp_path,
        curate={"rules": str(RECIPES / "curate.yaml"), "dataset": "tiny-feedback"},
        train={"recipe": recipe, "datasets": ["facts"], "overrides": short},
    )
    result = run_turn(ws, config)
    assert result.status in ("promoted", "rejected"), result.reason
    turn = latest_turn(ws.database, "tiny")
    curated, trained = turn.outputs("curate"), turn.outputs("train")
    assert curated["feedback_total"] == len(CORRECTED) + len(LIKED)
    assert curated["counts"]["eval_items"] >= 1 and curated["counts"]["sft"] >= 1
    assert trained["dataset"] == "tiny-train@1"  # facts + the curated SFT rows, merged
    assert trained["rows"] == 8 + curated["counts"]["sft"]
    assert set(result.gate["metrics"]) == {"facts", "feedback"}
    scored = ws.path / "flywheel" / "tiny" / "turn-1" / "feedback-eval.jsonl"
    assert len(scored.read_text().splitlines()) == curated["counts"]["eval_items"]
