"""From served traces and their feedback to candidate rows: SFT, preference pairs, eval items.

Pure selection: no PII, moderation or dedup here (the app layer applies those). Rows are in
the formats the training recipes and the QA evaluation read — SFT `{"messages"}`, DPO
`{"prompt", "chosen", "rejected"}`, QA `{"question", "context", "answers"}` — and every row's
`meta` names the traces and feedback it came from. The latest feedback on a trace decides it.
A prompt held out for evaluation gives no training row at all, so the gate tests on unseen data.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from feilun.feedback.rules import CurationRules
from feilun.store.database import Database
from feilun.store.schema import feedback, tenants, traces

Kind = Literal["sft", "preference", "eval"]
KINDS: tuple[Kind, ...] = ("sft", "preference", "eval")
SOURCE = "feedback"
_CHAT_ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class Interaction:
    """One served answer and the feedback that decides what it is worth."""

    trace_id: str
    tenant_id: str
    model: str
    messages: tuple[tuple[str, str], ...]  # (role, content) up to the answer
    answer: str
    feedback_id: str
    rating: int
    scale: str
    correction: str | None
    superseded: tuple[str, ...] = ()  # older feedback on the same trace, not used

    @property
    def prompt_key(self) -> str:
        """The conversation as compared: same messages (spacing aside), same prompt."""
        canonical = [(role, " ".join(text.split())) for role, text in self.messages]
        return json.dumps(canonical, ensure_ascii=False)

    @property
    def question(self) -> str:
        """The last user message."""
        return next(text for role, text in reversed(self.messages) if role == "user")

    @property
    def is_single_turn(self) -> bool:
        """Only system messages before one user message (what a preference row can hold)."""
        return [role for role, _ in self.messages if role != "system"] == ["user"]


@dataclass
class Candidates:
    """Candidate rows per kind, and why the rest of the feedback gave none."""

    rows: dict[Kind, list[dict[str, Any]]] = field(
        default_factory=lambda: {kind: [] for kind in KINDS}
    )
    skipped: Counter[str] = field(default_factory=Counter)
    _ids: set[str] = field(default_factory=set)

    def add(self, kind: Kind, row: dict[str, Any]) -> None:
        """Add a row unless one with the same id (the same lineage) is there already."""
        if row["id"] not in self._ids:
            self._ids.add(row["id"])
            self.rows[kind].append(row)


# --- reading the store -----------------------------------------------------------------------


def load_interactions(
    db: Database, since: datetime | None = None, tenant_names: Sequence[str] | None = None
) -> tuple[list[Interaction], int, Counter[str]]:
    """The traces with feedback (since `since`), the feedback rows read, and why some gave none.

    `tenant_names` keeps only those tenants (names or ids).
    """
    query = (
        sa.select(
            feedback.c.id,
            feedback.c.trace_id,
            feedback.c.tenant_id,
            feedback.c.rating,
            feedback.c.scale,
            feedback.c.corrected_answer,
            traces.c.model,
            traces.c.endpoint,
            traces.c.status,
            traces.c.request,
            traces.c.response,
        )
        .select_from(feedback)
        .outerjoin(traces, traces.c.id == feedback.c.trace_id)  # traces may have been purged
        .order_by(feedback.c.created_at, feedback.c.id)
    )
    if since is not None:
        query = query.where(feedback.c.created_at >= since)
    if tenant_names is not None:
        ids = sa.select(tenants.c.id).where(
            sa.or_(tenants.c.name.in_(tenant_names), tenants.c.id.in_(tenant_names))
        )
        query = query.where(feedback.c.tenant_id.in_(ids))
    with db.session(is_read_only=True) as session:
        rows = list(session.execute(query))
    by_trace: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_trace[row.trace_id].append(row)  # oldest first: the last one decides
    skipped: Counter[str] = Counter()
    found = []
    for trace_rows in by_trace.values():
        made = _interaction(trace_rows)
        if isinstance(made, str):
            skipped[made] += len(trace_rows)
        else:
            if made.superseded:
                skipped["superseded"] += len(made.superseded)
            found.append(made)
    return found, len(rows), skipped


def _interaction(rows: list[Any]) -> Interaction | str:
    """The trace's interaction, or why it cannot give an example."""
    last = rows[-1]
    if last.status is None:
        return "trace_purged"
    if last.status != "ok":
        return "failed_request"
    messages = messages_of(last.request)
    answer = answer_of(last.response)
    if messages is None or not any(role == "user" for role, _ in messages):
        return "unreadable_request"
    if not answer:
        return "empty_answer"
    return Interaction(
        trace_id=last.trace_id,
        tenant_id=last.tenant_id,
        model=last.model,
        messages=messages,
        answer=answer,
        feedback_id=last.id,
        rating=last.rating,
        scale=last.scale,
        correction=(last.corrected_answer or "").strip() or None,
        superseded=tuple(r.id for r in rows[:-1]),
    )


def messages_of(request: Any) -> tuple[tuple[str, str], ...] | None:
    """The conversation of a chat request (or a completion's prompt as one user turn)."""
    if not isinstance(request, dict):
        return None
    prompt = request.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if isinstance(prompt, str) and prompt.strip():
        return (("user", prompt),)
    raw = request.get("messages")
    if not isinstance(raw, list) or not raw:
        return None
    out = []
    for message in raw:
        role = message.get("role") if isinstance(message, dict) else None
        text = _text_of(message.get("content")) if isinstance(message, dict) else None
        if role not in _CHAT_ROLES or text is None:
            return None  # tool calls and images are not what SFT rows hold
        out.append((str(role), text))
    return tuple(out)


def _text_of(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    return None


def answer_of(response: Any) -> str:
    """The first choice's text of a stored chat or completion response ("" when none)."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    choice = choices[0]
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else choice.get("text")
    return text.strip() if isinstance(text, str) else ""


# --- selecting -------------------------------------------------------------------------------


def build_candidates(
    interactions: Sequence[Interaction],
    rules: CurationRules,
    trained_questions: Set[str] = frozenset(),
) -> Candidates:
    """SFT rows, preference pairs and eval items from the interactions, by the rules.

    A question in `trained_questions` (normalised as `row_question` does: rows trained on
    before) is never held out: an eval item on it would test what the model has seen.
    """
    out = Candidates()
    by_prompt: dict[str, list[Interaction]] = defaultdict(list)
    for interaction in interactions:
        by_prompt[interaction.prompt_key].append(interaction)
    vote = _voter(rules)
    for key, group in by_prompt.items():
        corrected_downs = [i for i in group if i.correction and vote(i) == "down"]
        is_trained = " ".join(group[0].question.split()) in trained_questions
        if corrected_downs and not is_trained and _is_held_out(key, rules):
            out.add("eval", eval_row(corrected_downs))
            out.skipped["held_out_for_eval"] += len(group) - len(corrected_downs)
            continue
        for interaction in group:
            _add_single(out, interaction, vote(interaction), rules)
        if rules.preference.use_vote_pairs:
            _add_vote_pairs(out, group, vote)
    return out


def _voter(rules: CurationRules) -> Callable[[Interaction], str]:
    def vote(interaction: Interaction) -> str:
        if interaction.scale == "thumbs":
            return "up" if interaction.rating > 0 else "down"
        if interaction.rating >= rules.votes.up_min_stars:
            return "up"
        return "down" if interaction.rating <= rules.votes.down_max_stars else "neutral"

    return vote


def _is_held_out(prompt_key: str, rules: CurationRules) -> bool:
    """A stable draw per prompt: the same prompt lands on the same side in every run."""
    digest = hashlib.sha256(f"{rules.eval.seed}:{prompt_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rules.eval.share


def _add_single(out: Candidates, interaction: Interaction, vote: str, rules: CurationRules) -> None:
    correction = interaction.correction
    if correction is not None and correction != interaction.answer:
        if rules.sft.use_corrections:
            out.add("sft", sft_row(interaction, correction, "correction"))
        if rules.preference.use_corrections:
            if interaction.is_single_turn:
                out.add("preference", preference_row(interaction, correction, [interaction]))
            else:
                out.skipped["multi_turn_preference"] += 1
        if not (rules.sft.use_corrections or rules.preference.use_corrections):
            out.skipped["corrections_off"] += 1
    elif vote == "up":
        if rules.sft.use_upvotes:
            out.add("sft", sft_row(interaction, interaction.answer, "upvote"))
        else:
            out.skipped["upvotes_off"] += 1
    elif vote == "neutral":
        out.skipped["neutral_rating"] += 1


def _add_vote_pairs(
    out: Candidates, group: list[Interaction], vote: Callable[[Interaction], str]
) -> None:
    """Each down-voted answer loses to the newest up-voted answer to the same prompt."""
    ups = [i for i in group if vote(i) == "up" and not i.correction]
    downs = [i for i in group if vote(i) == "down"]
    if not ups or not downs:
        return
    chosen = ups[-1]
    for rejected in downs:
        if rejected.answer == chosen.answer:
            out.skipped["same_answer_pair"] += 1
        elif not chosen.is_single_turn:
            out.skipped["multi_turn_preference"] += 1
        else:
            row = preference_row(rejected, chosen.answer, [chosen, rejected], kind="vote_pair")
            out.add("preference", row)


# --- rows ------------------------------------------------------------------------------------


def lineage_meta(interactions: Sequence[Interaction], kind: str) -> dict[str, Any]:
    """Where a row came from: its traces, feedback, tenants and the models that answered."""
    return {
        "source": SOURCE,
        "kind": kind,
        "trace_ids": list(dict.fromkeys(i.trace_id for i in interactions)),
        "feedback_ids": list(dict.fromkeys(i.feedback_id for i in interactions)),
        "tenant_ids": sorted({i.tenant_id for i in interactions}),
        "models": sorted({i.model for i in interactions}),
    }


def _row_id(prefix: str, meta: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps([prefix, meta["feedback_ids"]]).encode()).hexdigest()
    return f"{prefix}_{digest[:16]}"


def sft_row(interaction: Interaction, answer: str, kind: str) -> dict[str, Any]:
    """A chat row: the conversation, then `answer` as the assistant turn."""
    meta = lineage_meta([interaction], kind)
    messages = [{"role": role, "content": text} for role, text in interaction.messages]
    messages.append({"role": "assistant", "content": answer})
    return {"id": _row_id("fbs", meta), "messages": messages, "meta": meta}


def preference_row(
    prompt_of: Interaction, chosen: str, interactions: Sequence[Interaction], kind: str = ""
) -> dict[str, Any]:
    """A DPO row: `chosen` over `prompt_of`'s answer, for its last user message."""
    meta = lineage_meta(interactions, kind or "correction")
    return {
        "id": _row_id("fbp", meta),
        "prompt": prompt_of.question,
        "chosen": chosen,
        "rejected": prompt_of.answer,
        "meta": meta,
    }


def eval_row(corrected: Sequence[Interaction]) -> dict[str, Any]:
    """A QA eval item: the question, and every correction given for it as an answer."""
    meta = lineage_meta(corrected, "eval")
    answers = list(dict.fromkeys(i.correction for i in corrected if i.correction))
    question = corrected[0].question
    return {
        "id": _row_id("fbe", meta),
        "question": question,
        "context": "",
        "answers": answers,
        "meta": meta,
    }


# --- what filters look at --------------------------------------------------------------------

Role = Literal["prompt", "answer", "other"]
_FIELD_ROLES: tuple[tuple[str, Role], ...] = (
    ("prompt", "prompt"),
    ("question", "prompt"),
    ("context", "prompt"),
    ("text", "prompt"),
    ("chosen", "answer"),
    ("rejected", "other"),
)


def row_fields(row: dict[str, Any]) -> list[tuple[tuple[str | int, ...], Role]]:
    """The text fields of a row of any kind, by path, with what each one is."""
    if isinstance(row.get("messages"), list):
        return [
            (("messages", n, "content"), "answer" if m.get("role") == "assistant" else "prompt")
            for n, m in enumerate(row["messages"])
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        ]
    fields: list[tuple[tuple[str | int, ...], Role]] = [
        ((name,), role) for name, role in _FIELD_ROLES if isinstance(row.get(name), str)
    ]
    if isinstance(row.get("answers"), list):
        fields += [(("answers", n), "answer") for n in range(len(row["answers"]))]
    return fields


def get_field(row: dict[str, Any], path: tuple[str | int, ...]) -> str:
    """The text at `path`."""
    value: Any = row
    for part in path:
        value = value[part]
    return str(value)


def set_field(row: dict[str, Any], path: tuple[str | int, ...], text: str) -> None:
    """Replace the text at `path` in place."""
    value: Any = row
    for part in path[:-1]:
        value = value[part]
    value[path[-1]] = text


def row_text(row: dict[str, Any]) -> str:
    """All of a row's text, one field a line: what duplicates are judged on."""
    return "\n".join(get_field(row, path) for path, _ in row_fields(row))


def row_question(row: dict[str, Any]) -> str | None:
    """The last user message (or prompt, or question) of a row, spacing normalised."""
    if isinstance(row.get("messages"), list):
        users = [
            m.get("content")
            for m in row["messages"]
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        text = users[-1] if users else None
    else:
        text = row.get("prompt") or row.get("question")
    return " ".join(text.split()) if isinstance(text, str) and text.strip() else None
