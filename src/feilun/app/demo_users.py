"""Simulated users: they ask the served model over HTTP and rate each answer from an answer key.

Each user question is sent with the official `openai` client to the gateway (the model the
`prod` alias serves), the answer is judged against the key held aside for it, and feedback
goes to `POST /v1/feedback` with the answer's trace id: an up-vote for a correct answer, a
down-vote with the key's answer as the correction for a wrong one. Each piece of feedback's
client id is `demo-<round>-<item>`: a round run again (after a crash) skips the items it
rated already, so no question is rated twice in one round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa

from feilun.app.audit import audit_log
from feilun.app.demo_data import DemoItem
from feilun.app.serve import build_server_app, serve_in_thread
from feilun.app.workspace import Workspace
from feilun.core.errors import NotFound
from feilun.evaluation.qa import score_answer
from feilun.serving.accounts import Accounts
from feilun.store.schema import feedback

#: An answer at least this close to the key (token F1) counts as correct, as does one that
#: contains the key. A wrong number keeps F1 at 0.5 ("0.18 MPa" for "0.38 MPa").
CORRECT_F1 = 0.8
MAX_TOKENS = 24
TENANT = "demo-users"  # the simulated users' tenant


@dataclass(frozen=True)
class Judgement:
    """What a simulated user makes of one answer."""

    correct: bool
    rating: str  # up | down
    corrected_answer: str | None


def judge(answer: str, key: str) -> Judgement:
    """Up-vote an answer that matches the key, else down-vote it with the key as correction."""
    scores = score_answer(answer, (key,))
    correct = bool(scores["contains"]) or scores["f1"] >= CORRECT_F1
    return Judgement(correct, "up" if correct else "down", None if correct else key)


@dataclass(frozen=True)
class Exchange:
    """One simulated question, the served answer and the feedback it got."""

    item: str
    question: str
    answer: str
    key: str
    trace_id: str
    model: str
    rating: str
    feedback_id: str

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def ask_and_rate(
    base_url: str,
    api_key: str,
    model: str,
    items: Sequence[DemoItem],
    *,
    round_id: str,
    on_item: Callable[[Exchange], None] = lambda _: None,
) -> list[Exchange]:
    """Ask every item through the gateway at `base_url` and post the key's feedback on each."""
    import openai

    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=api_key, max_retries=2)
    exchanges = []
    for item in items:
        raw = client.chat.completions.with_raw_response.create(
            model=model,
            messages=item.messages(),  # type: ignore[arg-type]
            max_tokens=MAX_TOKENS,
            temperature=0,
        )
        completion = raw.parse()
        answer = completion.choices[0].message.content or ""
        trace_id = raw.headers["x-feilun-trace-id"]
        verdict = judge(answer, item.answer)
        body: dict[str, Any] = {
            "trace_id": trace_id,
            "rating": verdict.rating,
            "client_id": f"demo-{round_id}-{item.id}",
            "tags": ["demo", "correct" if verdict.correct else "wrong"],
        }
        if verdict.corrected_answer is not None:
            body["corrected_answer"] = verdict.corrected_answer
        stored = client.post("/feedback", body=body, cast_to=object)
        exchange = Exchange(
            item=item.id,
            question=item.question,
            answer=answer,
            key=item.answer,
            trace_id=trace_id,
            model=completion.model,
            rating=verdict.rating,
            feedback_id=str(stored["id"]) if isinstance(stored, dict) else "",
        )
        on_item(exchange)
        exchanges.append(exchange)
    return exchanges


@contextmanager
def serving(ws: Workspace) -> Iterator[str]:
    """The workspace's gateway under uvicorn on a free port of 127.0.0.1; its base URL."""
    with serve_in_thread(build_server_app(ws)) as url:
        yield url


def feedback_round(
    ws: Workspace,
    model: str,
    items: Sequence[DemoItem],
    *,
    round_id: str,
    on_item: Callable[[Exchange], None] = lambda _: None,
) -> list[Exchange]:
    """Serve the workspace in-process; the users of `TENANT` ask `model` and rate the answers.

    Items this round rated already are skipped; the exchanges of the others are returned.
    """
    prefix = f"demo-{round_id}-"
    with ws.database.session(is_read_only=True) as session:
        query = sa.select(feedback.c.client_id).where(feedback.c.client_id.startswith(prefix))
        rated = set(session.execute(query).scalars())
    items = [item for item in items if f"{prefix}{item.id}" not in rated]
    if not items:
        return []
    accounts = Accounts(ws.database, audit=audit_log(ws))
    try:
        accounts.get_tenant(TENANT)
    except NotFound:
        accounts.create_tenant(TENANT, actor="demo")
    secret, key = accounts.create_key(TENANT, actor="demo")
    try:
        with serving(ws) as url:
            return ask_and_rate(url, secret, model, items, round_id=round_id, on_item=on_item)
    finally:
        accounts.revoke_key(key.prefix, actor="demo")


def tally(exchanges: Sequence[Exchange]) -> dict[str, int]:
    """Up- and down-votes of a round."""
    up = sum(e.rating == "up" for e in exchanges)
    return {"asked": len(exchanges), "up": up, "down": len(exchanges) - up}
