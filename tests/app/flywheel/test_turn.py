"""Whole turns on the tiny model: a real candidate is promoted (a running server follows the
alias), a degraded one is rejected, and rollback restores what the promotion replaced.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from feilun.app.audit import audit_log
from feilun.app.flywheel import rollback, run_turn
from feilun.app.workspace import Workspace
from feilun.data.datasets import save_dataset
from feilun.store.audit import SqlAuditStore

from .conftest import TINY, fact_rows

ServeApp = Callable[[Any], AbstractContextManager[str]]


@pytest.fixture
def served_ref(ws: Workspace, serve_app: ServeApp) -> Iterator[Callable[[], str]]:
    """A running gateway on the workspace; a function asking it which model `prod` runs."""
    from feilun.app.serve import build_server_app
    from feilun.serving.accounts import Accounts

    accounts = Accounts(ws.database)
    secret, _ = accounts.create_key(accounts.create_tenant("acme").id)
    with serve_app(build_server_app(ws)) as url, httpx.Client(base_url=url) as client:

        def ask() -> str:
            response = client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {secret}"},
                json={
                    "model": "prod",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 2,
                },
            )
            assert response.status_code == 200, response.text
            return str(response.json()["feilun"]["model_ref"])

        yield ask


def _eventually(ask: Callable[[], str], expected: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while (seen := ask()) != expected:
        assert time.monotonic() < deadline, f"still served {seen}"
        time.sleep(0.1)


def test_a_better_candidate_is_promoted_and_a_degraded_one_rejected(
    ws: Workspace, served_ref: Callable[[], str]
) -> None:
    ws.models.set_alias("prod", "tiny")
    assert served_ref() == "tiny@1"
    steps: list[str] = []
    first = run_turn(ws, TINY, on_step=steps.append)
    assert first.status == "promoted", first.reason
    _eventually(served_ref, "tiny@1:tiny@1")  # the running server follows the promotion
    assert first.incumbent == "tiny@1"
    assert first.candidate == "tiny:tiny@1"
    assert ws.models.alias("prod").target == "tiny@1:tiny@1"
    facts = first.gate["metrics"]["facts"]["metrics"]["f1"]
    assert facts["candidate"]["value"] > facts["incumbent"]["value"] + 0.2
    assert [s for s in steps if not s.startswith(("training", "evaluating"))] == [
        "train",
        "evaluate",
        "gate",
        "promote",
        "report",
    ]

    # Honesty: a candidate trained on corrupted answers must not replace the good one.
    save_dataset(ws.catalog, ws.artifacts, "facts", fact_rows(corrupt=True))
    second = run_turn(ws, TINY)
    assert second.status == "rejected"
    assert second.gate["verdict"] == "blocked" and second.gate["reasons"]
    assert second.incumbent == "tiny@1:tiny@1"
    assert ws.models.alias("prod").target == "tiny@1:tiny@1"  # the incumbent stays

    report = json.loads((ws.path / "flywheel-reports" / "tiny" / "report.json").read_text())
    assert [(t["number"], t["status"]) for t in report["turns"]] == [
        (1, "promoted"),
        (2, "rejected"),
    ]
    assert report["turns"][1]["reasons"][0].startswith("facts f1")
    first_f1 = report["turns"][0]["metrics"]["facts"]["metrics"]["f1"]
    assert (
        first_f1["incumbent"]["low"]
        <= first_f1["incumbent"]["value"]
        <= first_f1["incumbent"]["high"]
        < first_f1["candidate"]["low"]
    )  # the gain is outside both intervals
    assert [t["training"]["rows"] for t in report["turns"]] == [8, 8]
    assert [t["feedback"]["total"] for t in report["turns"]] == [0, 0]
    assert all(t["training"]["seconds"] > 0 for t in report["turns"])
    html = (ws.path / "flywheel-reports" / "tiny" / "report.html").read_text()
    assert second.report_path.endswith("report.html")
    assert "<svg" in html and "rejected" in html and "<script" not in html

    moved = rollback(ws, "prod")
    assert (moved["from"], moved["to"]) == ("tiny@1:tiny@1", "tiny@1")
    assert ws.models.alias("prod").target == "tiny@1"

    # Both alias moves are in the audit chain, and the chain verifies.
    log = audit_log(ws)
    with ws.database.session(is_read_only=True) as session:
        store = SqlAuditStore(session)
        moves = [
            (row["action"], row["details"]["from"], row["details"]["to"])
            for row in store.events(target="prod")
        ]
        assert log.verify(store).is_valid
    assert moves == [
        ("model.promoted", "tiny@1", "tiny@1:tiny@1"),
        ("model.rolled_back", "tiny@1:tiny@1", "tiny@1"),
    ]
