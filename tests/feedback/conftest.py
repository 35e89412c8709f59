"""Feedback fixtures: a workspace on SQLite and on PostgreSQL, tenants with keys, and traces.

Traces are written the way the gateway writes them: `SqlLedger.admit` then `settle` with the
request and response bodies of a chat completion (the HTTP tests make theirs over HTTP).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from feilun.app.workspace import Workspace, init_workspace
from feilun.serving.accounts import Accounts
from feilun.serving.feedback import FeedbackIn, FeedbackRow, FeedbackStore
from feilun.serving.gateway import Outcome
from feilun.serving.ledger import SqlLedger
from feilun.serving.limits.memory import MemoryLimiter


@dataclass
class Shop:
    """A workspace with tenants `acme` and `beta`, their keys, and a way to make traces."""

    workspace: Workspace
    ledger: SqlLedger
    store: FeedbackStore
    keys: dict[str, str]  # tenant name → secret

    def trace(
        self,
        question: str,
        answer: str,
        tenant: str = "acme",
        system: str | None = None,
        model: str = "tiny@1",
    ) -> str:
        """Settle one chat completion as the gateway does; its trace id."""
        principal = self.ledger.authenticate(f"Bearer {self.keys[tenant]}")
        admission = self.ledger.admit(principal, "tiny", 10)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": question})
        request = {"model": "tiny", "messages": messages, "max_tokens": 64}
        response = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}],
        }
        outcome = Outcome(
            model, None, request, response, 5, 5, "tokenizer", "ok", "chat.completions"
        )
        self.ledger.settle(admission, outcome)
        return admission.trace_id

    def rate(self, trace_id: str, rating: Any, correction: str | None = None) -> FeedbackRow:
        """Feedback from the trace's own tenant, as POST /v1/feedback records it."""
        entry = FeedbackIn(trace_id=trace_id, rating=rating, corrected_answer=correction)
        row, _ = self.store.record(entry, None, "sk-test")
        return row


def make_workspace(tmp_path: Path, database_url: str | None) -> Workspace:
    """A fresh workspace (migrated), on SQLite unless a database URL is given."""
    env = {"FEILUN_WORKSPACE": str(tmp_path / "ws")}
    if database_url is not None:
        env["FEILUN_DATABASE_URL"] = database_url
    workspace, _ = init_workspace(None, env)
    return workspace


@pytest.fixture(params=["sqlite", "postgresql"])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shop]:
    """A Shop on SQLite, then on a fresh PostgreSQL schema."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    workspace = make_workspace(tmp_path, url)
    accounts = Accounts(workspace.database)
    keys = {}
    for name in ("acme", "beta"):
        accounts.create_tenant(name)
        keys[name] = accounts.create_key(name)[0]
    ledger = SqlLedger(workspace.database, accounts, MemoryLimiter(), cache_ttl_s=0)
    yield Shop(workspace, ledger, FeedbackStore(workspace.database), keys)
    workspace.close()
