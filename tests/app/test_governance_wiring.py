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
from feilun.app.workspace import init_workspace, opened
from feilun.governance.watermark import deployment_watermark, detect
from feilun.models.registry import ModelRegistry
from feilun.serving.accounts import Accounts
from feilun.store.audit import SqlAuditStore
from feilun.store.deliveries import list_deliveries


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


def test_tenant_policies_watermark_answers_and_log_unlabelled_streams(
    tiny_workspace: Path, serve_app: Callable[[Any], AbstractContextManager[str]]
) -> None:
    """Through the served API: `watermark: true` marks only that tenant's answers, and a
    stream to a tenant without labels (no usage chunk asked) is in the delivery log."""
    with opened(tiny_workspace) as ws:
        accounts = Accounts(ws.database)
        keys = {}
        for name, policy in (
            ("marked", {"watermark": True, "labels": {"implicit": False}}),
            ("plain", {}),
        ):
            keys[name], _ = accounts.create_key(accounts.create_tenant(name).id)
            policy_store(ws).set(name, policy, "test")
        answers: dict[str, str] = {}
        with serve_app(build_server_app(ws)) as url:
            for name, secret in keys.items():
                client = openai.OpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
                ask: dict[str, Any] = {
                    "model": "tiny",
                    "messages": [{"role": "user", "content": "Write about pipes and valves."}],
                    "max_tokens": 300,
                    "temperature": 1.0,
                    "seed": 3,
                }
                answers[name] = client.chat.completions.create(**ask).choices[0].message.content
                stream = client.chat.completions.create(**ask, stream=True)
                trace = stream.response.headers["x-feilun-trace-id"]
                assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                if name == "marked":
                    streamed_trace = trace
            model = ws.models.open("tiny")
            watermark = deployment_watermark(ws.settings)
        logged = [d.what for d in list_deliveries(ws.database)]
    z = {name: detect(model.encode(text), watermark).z for name, text in answers.items()}
    assert z["marked"] > 4 and abs(z["plain"]) < 3, z
    assert streamed_trace in logged and len(logged) == 2  # the marked tenant's answer and stream
