"""Moderation of served requests, under the calling tenant's policy.

The prompt (each conversation's last user message) is judged before any model runs: `block`
is a 400 and nothing is billed; `refuse` answers with the refusal template without running the
model; `mask` sends the masked prompt on; `flag` is served and recorded. Each answer is judged
as it leaves: whole, or piece by piece through a StreamGuard for a stream, which stops on a
violation and ends with a refusal notice (finish_reason `content_filter`). Only the tokens of
model text actually sent are billed. Why a request was judged goes to its trace (`moderation`).
An answer to a tenant whose policy switches a label off is recorded in the delivery log before
it is released (`Screening.label`).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from feilun.core.blocking import ensure_may_block
from feilun.core.protocols import Completion, Delta, GenerationParams, Usage
from feilun.core.records import Message
from feilun.governance.labels import make_label
from feilun.governance.moderation import (
    ACTION_STRENGTH,
    Language,
    Moderator,
    Policy,
    Verdict,
    detect_language,
    refusal_text,
)
from feilun.governance.pii import mask_pii
from feilun.governance.streaming import StreamGuard
from feilun.governance.taxonomy import RISK_BY_ID
from feilun.serving.errors import ContentBlocked
from feilun.serving.gateway import Principal
from feilun.store.deliveries import Delivery

logger = logging.getLogger(__name__)

AIGC_HEADER = "x-feilun-aigc"

BlockRecorder = Callable[[Principal, Verdict], None]
DeliveryRecorder = Callable[[Delivery], object]  # e.g. partial(record_delivery, database)


@dataclass
class Moderation:
    """What the gateway moderates with: one shared Moderator and each tenant's policy."""

    moderator: Moderator
    policy_of: Callable[[str], Policy]  # tenant id → the policy in force (cached)
    label_key: bytes | None = None  # signs AIGC labels for tenants whose policy asks for them
    on_block: BlockRecorder | None = None  # records a block (the audit log's `moderation.block`)
    on_delivery: DeliveryRecorder | None = None  # records an unlabelled answer (delivery log)


def action_of(verdict: Verdict) -> str:
    """The action that decided a verdict: block, refuse, flag, mask or allow."""
    return "mask" if verdict.decision == "allow" and verdict.is_masked else verdict.decision


def why(verdict: Verdict) -> dict[str, Any]:
    """What a trace records about one verdict."""
    return {
        "decision": verdict.decision,
        "action": action_of(verdict),
        "category": verdict.category,
        "layer": verdict.layer,
    }


@dataclass
class Screening:
    """The moderation of one admitted request: its policy, the prompt's verdict, the answers'."""

    moderator: Moderator
    policy: Policy
    language: Language  # the user's, for refusals
    principal: Principal  # who asked: blocks are recorded against it
    label_key: bytes | None = None  # signs AIGC labels when the policy asks for them
    prompt: Verdict | None = None  # only when not a plain allow
    answers: dict[int, Verdict] = field(default_factory=dict)  # choice index → verdict
    on_block: BlockRecorder | None = None
    on_delivery: DeliveryRecorder | None = None

    @property
    def is_refused(self) -> bool:
        """Whether the prompt is answered with the refusal template, without the model."""
        return self.prompt is not None and self.prompt.decision == "refuse"

    def refusal(self, verdict: Verdict) -> str:
        """The refusal for a verdict, in the user's language."""
        assert verdict.category is not None
        return refusal_text(verdict.category, self.language, self.policy)

    def note(self, index: int, verdict: Verdict) -> None:
        """Remember the strongest non-allow verdict of choice `index`."""
        if action_of(verdict) == "allow":
            return
        seen = self.answers.get(index)
        if seen is None or ACTION_STRENGTH[action_of(verdict)] > ACTION_STRENGTH[action_of(seen)]:
            self.answers[index] = verdict
            if verdict.decision == "block":
                _record_block(self.on_block, self.principal, verdict)

    def record(self) -> dict[str, Any] | None:
        """The trace's `moderation` object, or None when everything was allowed untouched."""
        found: dict[str, Any] = {}
        if self.prompt is not None:
            found["input"] = why(self.prompt)
        if self.answers:
            found["output"] = [{"index": i, **why(v)} for i, v in sorted(self.answers.items())]
        return found or None

    def trace(self, response: dict[str, Any]) -> dict[str, Any]:
        """`response` as the trace stores it: with `moderation`, PII masked per policy."""
        record = self.record()
        stored = response | {"moderation": record} if record else response
        return self.redact(stored)

    def redact(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` with personal data masked in every string, when the policy says so."""
        return redact_trace(self.policy, value, self.language)

    def label(self, text: str, trace_id: str) -> dict[str, str] | None:
        """The signed GB 45438 implicit label of an answer, when the policy asks for it.

        Called once per answer before it is released: when the tenant's policy switches a
        label off, this is where the delivery is recorded.
        """
        labels = self.policy.labels
        label = None
        if self.label_key is not None and labels.api and labels.implicit:
            label = make_label(text, self.label_key, labels.producer, produce_id=trace_id)
        if labels.is_waived and self.on_delivery is not None:
            off = [name for name in ("explicit", "implicit") if not getattr(labels, name)]
            delivery = Delivery(
                tenant=self.principal.tenant_name,
                recipient=f"key:{self.principal.key_prefix}",
                channel="api",
                what=trace_id,
                has_explicit=False,  # API answers never carry the visible label
                has_implicit=label is not None,
                reason=f"tenant policy: labels.{' and labels.'.join(off)} = false",
            )
            self.on_delivery(delivery)
        return label

    def params(self, params: GenerationParams) -> GenerationParams:
        """`params` with the watermark asked for when the tenant's policy says so."""
        if not self.policy.watermark or params.watermark:
            return params
        return params.model_copy(update={"watermark": True})

    def stream(self, index: int) -> StreamScreen:
        """A screen for streamed choice `index`."""
        guard = self.moderator.stream(self.policy, language=self.language)
        return StreamScreen(self, guard, index)


def redact_trace(policy: Policy, value: dict[str, Any], language: Language) -> dict[str, Any]:
    """A request or response as a trace stores it: PII masked unless the policy keeps it."""
    if policy.traces.pii == "keep":
        return value
    masked: dict[str, Any] = _mask_strings(value, language)
    return masked


def _mask_strings(value: Any, language: Language) -> Any:
    if isinstance(value, str):
        return mask_pii(value, language)
    if isinstance(value, dict):
        return {k: _mask_strings(v, language) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_strings(v, language) for v in value]
    return value


def screen_prompt(
    moderation: Moderation | None,
    principal: Principal,
    conversations: list[list[Message]],
    prompt_param: str,
) -> tuple[Screening | None, list[list[Message]]]:
    """Judge each conversation's last user message; the screening and the (masked) prompts.

    ContentBlocked (400) when the policy blocks one; the block is recorded first.
    """
    if moderation is None:
        return None, conversations
    policy = moderation.policy_of(principal.tenant_id)
    texts = [_last_user_text(c) for c in conversations]
    language = detect_language("\n".join(texts))
    screening = Screening(
        moderation.moderator,
        policy,
        language,
        principal,
        moderation.label_key,
        on_block=moderation.on_block,
        on_delivery=moderation.on_delivery,
    )
    masked: list[list[Message]] = []
    for conversation, text in zip(conversations, texts, strict=True):
        verdict = moderation.moderator.check(text, policy, is_prompt=True)
        if action_of(verdict) != "allow" and (
            screening.prompt is None
            or ACTION_STRENGTH[action_of(verdict)] > ACTION_STRENGTH[action_of(screening.prompt)]
        ):
            screening.prompt = verdict
        masked.append(
            _with_last_user_text(conversation, verdict.text) if verdict.is_masked else conversation
        )
    if screening.prompt is not None and screening.prompt.decision == "block":
        _record_block(moderation.on_block, principal, screening.prompt)
        raise _blocked(screening.prompt, prompt_param)
    return screening, masked


def _last_user_text(conversation: list[Message]) -> str:
    return next((m.content for m in reversed(conversation) if m.role == "user"), "")


def _with_last_user_text(conversation: list[Message], text: str) -> list[Message]:
    last = max(i for i, m in enumerate(conversation) if m.role == "user")
    return [
        m.model_copy(update={"content": text}) if i == last else m
        for i, m in enumerate(conversation)
    ]


def _blocked(verdict: Verdict, prompt_param: str) -> ContentBlocked:
    assert verdict.category is not None
    risk = RISK_BY_ID[verdict.category]
    error = ContentBlocked(
        f"the request was blocked by the content policy ({prompt_param}): it involves "
        f"{risk.name_en} ({risk.id}, TC260 {risk.code}; {verdict.layer} layer)",
        "rephrase the request without that content",
    )
    error.param = prompt_param  # type: ignore[attr-defined]
    return error


def _record_block(on_block: BlockRecorder | None, principal: Principal, verdict: Verdict) -> None:
    """The one place a moderation block (of a prompt or an answer) is recorded: log and audit."""
    ensure_may_block()  # the audit write: not from the event loop
    logger.info(
        "moderation block: tenant %s key %s category %s (%s)",
        principal.tenant_name,
        principal.key_prefix,
        verdict.category,
        verdict.layer,
    )
    if on_block is not None:
        on_block(principal, verdict)


def screen_completions(
    screening: Screening, completions: list[Completion], usage: Usage
) -> tuple[list[Completion], Usage]:
    """Judge whole answers: refused ones become the refusal (and are not billed), masks apply."""
    screened: list[Completion] = []
    unsent_tokens = 0
    for index, completion in enumerate(completions):
        verdict = screening.moderator.check(completion.text, screening.policy)
        screening.note(index, verdict)
        if verdict.decision in ("refuse", "block"):
            unsent_tokens += completion.usage.completion_tokens
            update = {"text": screening.refusal(verdict), "finish_reason": "content_filter"}
            completion = completion.model_copy(update=update)
        elif verdict.is_masked:
            completion = completion.model_copy(update={"text": verdict.text})
        screened.append(completion)
    billed = usage.completion_tokens - unsent_tokens
    return screened, Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=billed)


def refused_completions(screening: Screening, count: int) -> list[Completion]:
    """The answers to a refused prompt: the refusal template, nothing generated or billed."""
    assert screening.prompt is not None
    text = screening.refusal(screening.prompt)
    return [Completion(text=text, finish_reason="content_filter", usage=Usage())] * count


class StreamScreen:
    """Moderates one streamed choice: what to send for each model Delta, and the tokens sent.

    A model token is billed once all of its text has been sent: text the guard still holds
    back (a possible term's beginning), or never releases (after a stop), is not billed.
    """

    def __init__(self, screening: Screening, guard: StreamGuard, index: int) -> None:
        self.screening = screening
        self.guard = guard
        self.index = index
        self.stopped: Verdict | None = None
        self.is_finished = False
        self.is_noticed = False
        self.sent_tokens = 0
        self._sent_chars = 0
        self._received_chars = 0
        self._running_tokens = 0
        self._ends: deque[tuple[int, int]] = deque()  # (stream offset after a delta, tokens)

    def pieces(self, delta: Delta | None) -> list[Delta]:
        """What to send for a model Delta (None: the stream ended): text, then a stop's notice."""
        sent = self.feed(delta) if delta is not None else self.flush()
        pieces = [] if sent is None else [sent]
        if self.stopped is not None and not self.is_noticed:
            pieces.append(self.notice())
        return pieces

    def feed(self, delta: Delta) -> Delta | None:
        """The Delta to send for a model Delta (None: nothing to send now)."""
        self._count(delta)
        text = self._release(self.guard.feed(delta.text))
        if delta.finish_reason is not None and self.stopped is None:
            text += self._release(self.guard.finish())
            self.is_finished = True
        self._settle_sent()
        if self.stopped is not None:  # text released before the stop still goes out
            return Delta(text=text, completion_tokens=self.sent_tokens) if text else None
        if not text and delta.finish_reason is None and delta.grounding is None:
            return None
        return Delta(
            text=text,
            completion_tokens=self.sent_tokens,
            finish_reason=delta.finish_reason,
            usage=delta.usage,
            grounding=delta.grounding,
        )

    def flush(self) -> Delta | None:
        """At the end of a stream without a finish: the held-back text, if any."""
        if self.is_finished or self.stopped is not None:
            return None
        self.is_finished = True
        text = self._release(self.guard.finish())
        if self.stopped is not None:
            return None
        self._settle_sent()
        return Delta(text=text, completion_tokens=self.sent_tokens) if text else None

    def notice(self) -> Delta:
        """The last piece after a stop: the refusal in the user's language."""
        assert self.stopped is not None
        self.is_noticed = True
        separator = "\n\n" if self._sent_chars else ""
        text = separator + self.screening.refusal(self.stopped)
        return Delta(text=text, completion_tokens=self.sent_tokens, finish_reason="content_filter")

    def _release(self, verdict: Verdict) -> str:
        if verdict.decision in ("refuse", "block"):
            self.stopped = verdict
        self.screening.note(self.index, verdict)
        self._sent_chars += len(verdict.text)
        return verdict.text

    def _count(self, delta: Delta) -> None:
        if delta.usage is not None:
            self._running_tokens = delta.usage.completion_tokens
        elif delta.completion_tokens:
            self._running_tokens = delta.completion_tokens
        elif delta.text:
            self._running_tokens += 1  # a runtime without running counts: one token per piece
        self._received_chars += len(delta.text)
        self._ends.append((self._received_chars, self._running_tokens))

    def _settle_sent(self) -> None:
        while self._ends and self._ends[0][0] <= self._sent_chars:
            self.sent_tokens = self._ends.popleft()[1]


def label_header(label: dict[str, str]) -> str:
    """The label as the `x-feilun-aigc` header value (JSON, ASCII-escaped for HTTP)."""
    return json.dumps(label, ensure_ascii=True, separators=(",", ":"))
