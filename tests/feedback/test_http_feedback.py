"""POST /v1/feedback on the real server (uvicorn), traces made with the official `openai` client.

On SQLite and PostgreSQL: feedback is stored for the key's own traces only (another tenant's
trace is 404 exactly like an unknown one), a retry with the same client id returns the first
row with 200, and a bad rating is a 400 naming the allowed values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from feilun.serving.accounts import Accounts
from feilun.serving.feedback import FeedbackStore

from .conftest import make_workspace


@dataclass
class Served:
    url: str
    keys: dict[str, str]
    store: FeedbackStore

    def ask(self, tenant: str = "acme") -> str:
        """One chat completion through the openai client; its trace id."""
        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.keys[tenant], max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="tiny",
            messages=[{"role": "user", "content": "燃气表多久检定一次？"}],
            max_tokens=4,
        )
        raw.parse()
        return str(raw.headers["x-feilun-trace-id"])

    def post(self, body: dict[str, Any], tenant: str | None = "acme") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return httpx.post(f"{self.url}/v1/feedback", json=body, headers=headers, timeout=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tiny_model_dir: Path,
    serve_app: Callable[[Any], AbstractContextManager[str]],
) -> Iterator[Served]:
    from feilun.app.serve import build_server_app

    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    workspace = make_workspace(tmp_path, url)
    workspace.models.add("tiny", "safetensors", str(tiny_model_dir))
    accounts = Accounts(workspace.database)
    keys = {}
    for name in ("acme", "beta"):
        accounts.create_tenant(name)
        keys[name] = accounts.create_key(name)[0]
    with serve_app(build_server_app(workspace)) as base_url:
        yield Served(base_url, keys, FeedbackStore(workspace.database))
    workspace.close()


def test_feedback_is_stored_once_per_client_id(served: Served) -> None:
    trace_id = served.ask()
    body = {
        "trace_id": trace_id,
        "rating": "down",
        "corrected_answer": "燃气表的检定周期一般为十年。",
        "tags": ["wrong_number", "wrong_number"],
        "comment": "see the handbook, section 4",
        "client_id": "app-42",
    }
    created = served.post(body)
    assert created.status_code == 201, created.text
    row = created.json()
    assert row["object"] == "feedback" and row["id"].startswith("fbk_")
    assert (row["trace_id"], row["rating"], row["scale"], row["label"]) == (
        trace_id,
        -1,
        "thumbs",
        "down",
    )
    assert (
        row["tags"] == ["wrong_number"]
        and row["corrected_answer"] == "燃气表的检定周期一般为十年。"
    )

    again = served.post({**body, "rating": "up"})
    assert again.status_code == 200 and again.json() == row
    assert [r.id for r in served.store.find()] == [row["id"]]

    stars = served.post({"trace_id": trace_id, "rating": 4})
    assert stars.status_code == 201 and stars.json()["label"] == "4★"
    stats = served.store.stats()
    assert (stats.total, stats.with_correction, dict(stats.by_tenant)) == (2, 1, {"acme": 2})


def test_another_tenants_trace_is_not_found_like_an_unknown_one(served: Served) -> None:
    trace_id = served.ask("acme")
    foreign = served.post({"trace_id": trace_id, "rating": "up"}, tenant="beta")
    unknown = served.post({"trace_id": "trc_nosuchtrace", "rating": "up"}, tenant="beta")
    assert foreign.status_code == unknown.status_code == 404
    message = foreign.json()["error"]["message"]
    assert message.startswith(f"no trace {trace_id!r}")
    assert message.replace(trace_id, "trc_nosuchtrace") == unknown.json()["error"]["message"]
    assert unknown.json()["error"]["type"] == foreign.json()["error"]["type"] == "not_found_error"
    assert served.store.find() == []


def test_bad_input_names_what_is_allowed(served: Served) -> None:
    trace_id = served.ask()
    for rating in (7, 0, "meh", True, None):
        response = served.post({"trace_id": trace_id, "rating": rating})
        assert response.status_code == 400, (rating, response.text)
        error = response.json()["error"]
        assert error["param"] == "rating"
        assert "'up', 'down', or a number of stars from 1 to 5" in error["message"]
    assert served.post({"trace_id": trace_id, "rating": "up"}, tenant=None).status_code == 401
    reused = served.post({"trace_id": trace_id, "rating": "up", "client_id": "c1"})
    other = served.ask()
    clash = served.post({"trace_id": other, "rating": "up", "client_id": "c1"})
    assert reused.status_code == 201 and clash.status_code == 400
    assert "client_id 'c1' was already used" in clash.json()["error"]["message"]
