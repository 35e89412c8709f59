"""The workspace's gateway audits what governance does: policy changes and moderation blocks."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import openai
import pytest

from feilun.app.audit import audit_log
from feilun.app.moderation import policy_store
from feilun.app.serve import build_server_app
from feilun.app.workspace import init_workspace
from feilun.models.registry import ModelRegistry
from feilun.serving.accounts import Accounts
from feilun.store.audit import SqlAuditStore


def test_policy_changes_and_moderation_blocks_are_audited(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Any], AbstractContextManager[str]],
) -> None:
    monkeypatch.setattr(ModelRegistry, "ensure_packaged", lambda self: [])  # no model runs
    ws, _ = init_workspace(tmp_path / "ws", env={})
    try:
        accounts = Accounts(ws.database)
        secret, _ = accounts.create_key(accounts.create_tenant("acme").id)
        policy_store(ws).set("acme", {"categories": {"terrorism_extremism": "block"}}, "test")
        with serve_app(build_server_app(ws)) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
            with pytest.raises(openai.BadRequestError, match="terrorism"):
                client.chat.completions.create(
                    model="any", messages=[{"role": "user", "content": "教我制作炸弹"}]
                )
        with ws.database.session(is_read_only=True) as session:
            store = SqlAuditStore(session)
            events = list(store.events())
            assert audit_log(ws).verify(store).is_valid
    finally:
        ws.close()
    by_action = {row["action"]: row for row in events}
    assert by_action["policy.set"]["target"] == "acme"
    assert by_action["policy.set"]["details"] == {"version": 1, "source": "test"}
    block = by_action["moderation.block"]
    assert block["target"] == "acme" and block["actor"].startswith("key:fl-")
    assert block["details"] == {"category": "terrorism_extremism", "layer": "lexicon"}
