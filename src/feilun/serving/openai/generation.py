"""Running an admitted chat model for /v1/chat/completions and /v1/completions alike.

`open_generation` does the checks in order — key, prompt moderation, model, context window,
quota — and only then opens the bill. `generate_all` answers at once; `stream_events` streams
SSE and bills the completion tokens actually sent: settled before the usage chunk and `[DONE]`,
on client disconnect ("disconnected"), and on failure ("error"). Answers are moderated under the
tenant's policy as they leave (see `feilun.serving.moderation`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
from fastapi.responses import Response
from starlette.requests import Request

from feilun.core.blocking import ensure_may_block, run_nonblocking
from feilun.core.errors import BackendUnavailable, InputTooLong
from feilun.core.protocols import ChatModel, Completion, Delta, GenerationParams, Usage
from feilun.core.records import Message
from feilun.serving.errors import error_payload
from feilun.serving.gateway import Admission, Gateway
from feilun.serving.moderation import (
    AIGC_HEADER,
    Screening,
    StreamScreen,
    label_header,
    refused_completions,
    screen_completions,
    screen_prompt,
)
from feilun.serving.openai.metering import Meter, gateway_of, new_meter, usage_source_of
from feilun.serving.responses import FastJSONResponse
from feilun.serving.streaming import DONE, EventStream, InThreads, sse_event

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 1024  # when neither the client nor the model names a limit
# Longer prompts are screened and counted in a worker thread: it takes a millisecond or more.
INLINE_PROMPT_CHARS = 4096


@dataclass
class GenerationRequest:
    """What an endpoint asks of the model, already validated by its protocol."""

    model: str
    conversations: list[list[Message]]  # one per prompt; each answered `n` times
    n: int
    max_tokens: int | None
    max_tokens_param: str  # the field the client used, for error messages
    prompt_param: str  # "messages" or "prompt"
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    endpoint: str
    body: dict[str, Any]


@dataclass
class Generation:
    """An admitted generation: the model, its decoding params, and the open bill."""

    model: ChatModel
    ref: str
    name: str
    choices: list[list[Message]]  # conversation of each choice, in choice order
    params: GenerationParams
    prompt_tokens: int
    meter: Meter
    screening: Screening | None = None  # None: the gateway does not moderate

    @property
    def trace_id(self) -> str:
        """The trace id, also the `x-feilun-trace-id` header."""
        return self.meter.admission.trace_id

    @property
    def usage_source(self) -> str:
        """Where the token counts come from: `tokenizer` or `upstream`."""
        return self.meter.usage_source


def _context_check(ask: GenerationRequest, counts: Sequence[int], context: int | None) -> int:
    """The max_tokens to use; InputTooLong (naming the limit) when a prompt does not fit."""
    if context is None:
        return ask.max_tokens or DEFAULT_MAX_TOKENS
    longest = max(counts)
    if longest >= context:
        error = InputTooLong(
            f"the {ask.prompt_param} take {longest} tokens, the whole context window of "
            f"{context} tokens of model {ask.model!r}",
            fix=f"shorten the {ask.prompt_param}",
        )
        error.param = ask.prompt_param  # type: ignore[attr-defined]
        raise error
    if ask.max_tokens is None:
        return context - longest
    if longest + ask.max_tokens > context:
        error = InputTooLong(
            f"{ask.max_tokens_param}={ask.max_tokens} plus {longest} prompt tokens is over the "
            f"context window of {context} tokens of model {ask.model!r}",
            fix=f"set {ask.max_tokens_param} to at most {context - longest}",
        )
        error.param = ask.max_tokens_param  # type: ignore[attr-defined]
        raise error
    return ask.max_tokens


async def open_generation(request: Request, ask: GenerationRequest) -> Generation:
    """Authenticate, open the model, check the context window, admit; nothing billed on error.

    All four run on the event loop when they only read cached state (the usual case), else
    together in one worker thread (see `core.blocking`).
    """
    gateway = gateway_of(request)
    authorization = request.headers.get("authorization")
    admitted = await run_nonblocking(_admit_generation, gateway, authorization, ask)
    admission, screening, model = admitted.admission, admitted.screening, admitted.model
    request.state.trace_id = admission.trace_id
    body = ask.body if screening is None else screening.redact(ask.body)
    meter = new_meter(request, admission, admitted.ref, ask.endpoint, body, usage_source_of(model))
    if screening is not None:
        meter.to_trace = screening.trace
    choices = [c for c in admitted.conversations for _ in range(ask.n)]
    return Generation(
        model,
        admitted.ref,
        ask.model,
        choices,
        admitted.params,
        admitted.prompt_tokens,
        meter,
        screening,
    )


@dataclass
class _Admitted:
    """What admission settled: the model, the screened conversations, the params, the bill."""

    ref: str
    model: ChatModel
    conversations: list[list[Message]]
    params: GenerationParams
    prompt_tokens: int
    admission: Admission
    screening: Screening | None


def _admit_generation(
    gateway: Gateway, authorization: str | None, ask: GenerationRequest
) -> _Admitted:
    """Admit `ask`, changing nothing before its first blocking step (see `core.blocking`)."""
    if sum(len(m.content) for c in ask.conversations for m in c) > INLINE_PROMPT_CHARS:
        ensure_may_block()
    principal = gateway.ledger.authenticate(authorization)
    screening, conversations = screen_prompt(
        gateway.moderation, principal, ask.conversations, ask.prompt_param
    )
    ref, model = gateway.open_model(ask.model)
    counts = [model.count_tokens(c) for c in conversations]
    max_tokens = _context_check(ask, counts, getattr(model, "context_length", None))
    params = GenerationParams(
        max_tokens=max_tokens,
        temperature=ask.temperature,
        top_p=ask.top_p,
        stop=ask.stop,
        seed=ask.seed,
    )
    if screening is not None:
        params = screening.params(params)  # the tenant's policy may ask for the watermark
    prompt_tokens = sum(counts)
    reserve = prompt_tokens + max_tokens * ask.n * len(conversations)
    admission = gateway.ledger.admit(principal, ask.model, reserve)
    return _Admitted(ref, model, conversations, params, prompt_tokens, admission, screening)


async def _generate_async(gen: Generation) -> list[Completion]:
    """Models with a native `achat` (upstream servers) run on the loop, the rest in a thread."""
    achat = getattr(gen.model, "achat", None)
    if achat is None:
        return await anyio.to_thread.run_sync(_generate, gen)
    return list(await asyncio.gather(*(achat(c, gen.params) for c in gen.choices)))


async def open_deltas(
    model: ChatModel, conversation: list[Message], params: GenerationParams
) -> Deltas:
    """Start one streamed answer: natively async (`astream`) or a blocking stream in threads."""
    astream = getattr(model, "astream", None)
    if astream is not None:
        deltas: Deltas = await astream(conversation, params)
        return deltas
    return InThreads(await anyio.to_thread.run_sync(model.stream, conversation, params))


def _generate(gen: Generation) -> list[Completion]:
    batch = getattr(gen.model, "chat_batch", None)
    if batch is not None and len(gen.choices) > 1:
        completions: list[Completion] = batch(gen.choices, gen.params)
        return completions
    return [gen.model.chat(c, gen.params) for c in gen.choices]


def _mark_upstream(gen: Generation, error: BaseException) -> None:
    if isinstance(error, BackendUnavailable) and gen.usage_source == "upstream":
        error.is_upstream = True  # type: ignore[attr-defined]  # reported as 502


async def generate_all(gen: Generation) -> tuple[list[Completion], Usage]:
    """Every choice at once (one batch when the model can), and the usage to report and bill."""
    try:
        completions = await _generate_async(gen)
    except BaseException as e:
        _mark_upstream(gen, e)
        await gen.meter.settle({"error": str(e)}, 0, 0, "error")
        raise
    prompt_tokens = gen.prompt_tokens
    if gen.usage_source == "upstream":
        prompt_tokens = sum(c.usage.prompt_tokens for c in completions) or prompt_tokens
    completion_tokens = sum(c.usage.completion_tokens for c in completions)
    return completions, Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


class Deltas(Protocol):
    """A started stream of one answer: async-iterable, and closable even if never iterated."""

    def __aiter__(self) -> AsyncIterator[Delta]:
        """Iterate the Deltas."""
        ...

    async def aclose(self) -> None:
        """Stop generating and release what the stream holds."""
        ...


class ChunkFormat(Protocol):
    """How an endpoint writes its stream chunks."""

    def opening(self, index: int) -> dict[str, Any] | None:
        """The chunk that opens a choice (the assistant role), if the endpoint has one."""
        ...

    def piece(self, index: int, delta: Delta) -> dict[str, Any]:
        """The chunk carrying one Delta of choice `index`."""
        ...

    def usage(self, usage: Usage) -> dict[str, Any]:
        """The last chunk, with usage and no choices."""
        ...


@dataclass
class _Tally:
    """What has actually been sent, per choice."""

    texts: list[str]
    tokens: list[int]
    reasons: list[str | None]
    groundings: dict[int, dict[str, Any]] = field(default_factory=dict)
    upstream_prompt_tokens: int = 0
    is_started: bool = field(default=False)

    def record(self, index: int, delta: Delta) -> None:
        self.is_started = True
        self.texts[index] += delta.text
        if delta.usage is not None:
            self.tokens[index] = delta.usage.completion_tokens
            self.upstream_prompt_tokens += delta.usage.prompt_tokens
        elif delta.completion_tokens:
            self.tokens[index] = delta.completion_tokens
        elif delta.text:
            self.tokens[index] += 1  # a runtime without running counts: one token per piece
        if delta.finish_reason is not None:
            self.reasons[index] = delta.finish_reason
        if delta.grounding is not None:
            self.groundings[index] = delta.grounding.model_dump(mode="json")

    def response(self) -> dict[str, Any]:
        return {
            "choices": [
                {"index": i, "text": t, "finish_reason": r}
                | ({"feilun": self.groundings[i]} if i in self.groundings else {})
                for i, (t, r) in enumerate(zip(self.texts, self.reasons, strict=True))
            ]
        }


async def open_stream(gen: Generation) -> Deltas:
    """Start the first choice's stream before any byte is sent, so bad input gets its status."""
    try:
        return await open_deltas(gen.model, gen.choices[0], gen.params)
    except BaseException as e:
        _mark_upstream(gen, e)
        await gen.meter.settle({"error": str(e)}, 0, 0, "error")
        raise


async def stream_events(
    gen: Generation, fmt: ChunkFormat, include_usage: bool, first: Deltas
) -> AsyncIterator[bytes]:
    """The SSE body of a streamed generation; the bill is settled before the last event.

    `first` is the already opened stream of choice 0 (see `open_stream`).
    """
    count = len(gen.choices)
    tally = _Tally(texts=[""] * count, tokens=[0] * count, reasons=[None] * count)
    gauge = gen.meter.metrics.streams_in_flight
    gauge.inc()
    try:
        for index, conversation in enumerate(gen.choices):
            deltas = first if index == 0 else await open_deltas(gen.model, conversation, gen.params)
            screen = gen.screening.stream(index) if gen.screening is not None else None
            sending = deltas if screen is None else _screened(screen, deltas)
            try:
                opening = fmt.opening(index)
                if opening is not None:
                    yield sse_event(opening)
                async for delta in sending:
                    yield sse_event(fmt.piece(index, delta))
                    tally.record(index, delta)  # reached only once the chunk was sent
                    if screen is not None:
                        tally.tokens[index] = screen.sent_tokens
            finally:
                with anyio.CancelScope(shield=True):
                    if sending is not deltas:
                        await sending.aclose()
                    await deltas.aclose()
        usage = Usage(prompt_tokens=_prompt_tokens(gen, tally), completion_tokens=sum(tally.tokens))
        await gen.meter.settle(tally.response(), usage.prompt_tokens, usage.completion_tokens, "ok")
        # Also without the usage chunk: labelling records an unlabelled delivery.
        label = await _label(gen, tally.texts[0])
        if include_usage:
            labelled = {"feilun": {"aigc": label}} if label else {}
            yield sse_event(fmt.usage(usage) | labelled)
        yield DONE
    except (GeneratorExit, anyio.get_cancelled_exc_class()):
        await settle_cut(gen, tally, "disconnected")
        raise
    except Exception as e:
        _mark_upstream(gen, e)
        if not gen.meter.is_settled:
            logger.warning("stream %s failed: %s", gen.trace_id, e, exc_info=True)
        await settle_cut(gen, tally, "error")
        yield sse_event(error_payload(e))
    finally:
        gauge.dec()


async def _screened(screen: StreamScreen, deltas: Deltas) -> AsyncGenerator[Delta, None]:
    """The Deltas to send for a model's: moderated text; after a stop, the notice and no more."""
    async for delta in deltas:
        for sent in screen.pieces(delta):
            yield sent
        if screen.stopped is not None:
            return  # the caller closes the model's stream: the rest would not be sent
    for sent in screen.pieces(None):
        yield sent


async def abandon_stream(gen: Generation, first: Deltas) -> None:
    """Clean up a stream whose body may never have run (client gone before the first byte)."""
    with anyio.CancelScope(shield=True):
        await first.aclose()
    count = len(gen.choices)
    await settle_cut(gen, _Tally([""] * count, [0] * count, [None] * count), "disconnected")


def _prompt_tokens(gen: Generation, tally: _Tally) -> int:
    if gen.usage_source == "upstream" and tally.upstream_prompt_tokens:
        return tally.upstream_prompt_tokens
    return gen.prompt_tokens


async def settle_cut(gen: Generation, tally: _Tally, status: str) -> None:
    """Bill a stream that ended early: prompt tokens only if anything was sent.

    What was sent was delivered: a waived label's delivery is recorded before the bill.
    """
    prompt_tokens = _prompt_tokens(gen, tally) if tally.is_started else 0
    response = tally.response() | {"status": status}
    try:
        if tally.is_started and not gen.meter.is_settled:
            with anyio.CancelScope(shield=True):
                await _label(gen, tally.texts[0])
        await gen.meter.settle(response, prompt_tokens, sum(tally.tokens), status)
    except Exception:
        logger.exception("could not settle %s stream %s", status, gen.trace_id)


async def respond(
    gen: Generation,
    *,
    is_stream: bool,
    include_usage: bool,
    chunks: Callable[[Generation, bool, int], ChunkFormat],
    body: Callable[[Generation, list[Completion], Usage], dict[str, Any]],
) -> Response:
    """Stream the answer as SSE, or generate it whole, settle it, then return it as JSON."""
    fmt = chunks(gen, include_usage, int(time.time()))
    if gen.screening is not None and gen.screening.is_refused:
        return await _respond_refused(gen, gen.screening, is_stream, include_usage, fmt, body)
    if is_stream:
        first = await open_stream(gen)
        return EventStream(
            stream_events(gen, fmt, include_usage, first),
            on_close=lambda: abandon_stream(gen, first),
        )
    completions, usage = await generate_all(gen)
    headers: dict[str, str] = {}
    if gen.screening is not None:
        completions, usage = screen_completions(gen.screening, completions, usage)
    response = body(gen, completions, usage)
    label = await _label(gen, completions[0].text)
    if label is not None:
        response["feilun"]["aigc"] = label
        headers[AIGC_HEADER] = label_header(label)
    await gen.meter.settle(response, usage.prompt_tokens, usage.completion_tokens, "ok")
    return FastJSONResponse(response, headers=headers)


async def _respond_refused(
    gen: Generation,
    screening: Screening,
    is_stream: bool,
    include_usage: bool,
    fmt: ChunkFormat,
    body: Callable[[Generation, list[Completion], Usage], dict[str, Any]],
) -> Response:
    """Answer a refused prompt with the refusal, without running the model; nothing billed."""
    completions = refused_completions(screening, len(gen.choices))
    response = body(gen, completions, Usage())
    await gen.meter.settle(response, 0, 0, "ok")
    if not is_stream:
        return FastJSONResponse(response)
    events = []
    for index, completion in enumerate(completions):
        opening = fmt.opening(index)
        if opening is not None:
            events.append(sse_event(opening))
        refusal = Delta(text=completion.text, finish_reason="content_filter")
        events.append(sse_event(fmt.piece(index, refusal)))
    if include_usage:
        events.append(sse_event(fmt.usage(Usage())))

    async def replay() -> AsyncIterator[bytes]:
        for event in [*events, DONE]:
            yield event

    return EventStream(replay())


async def _label(gen: Generation, text: str) -> dict[str, str] | None:
    """The answer's AIGC label, if its policy asks for one.

    A waived label's delivery is written on the loop only when the write would not wait.
    """
    if gen.screening is None:
        return None
    return await run_nonblocking(gen.screening.label, text, gen.trace_id)
