"""Continuous batching of concurrent callers: same answers as alone, rows come and go."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Sequence
from functools import partial
from typing import Any

import pytest

from feilun.core.protocols import Completion, GenerationParams
from feilun.core.records import Message
from feilun.models.runtimes.transformers import TransformersChatModel

from .conftest import PARROT_ANSWER, PARROT_QUESTION

# Different prompt lengths, answer lengths, sampling settings and stop strings.
JOBS: list[tuple[str, GenerationParams]] = [
    ("hi", GenerationParams(max_tokens=30)),
    ("What is the capital of France?", GenerationParams(max_tokens=7)),
    ("数据飞轮从文档开始。团队收集手册、工单和对话记录", GenerationParams(max_tokens=40)),
    ("hello there", GenerationParams(max_tokens=25, temperature=0.9, seed=7)),
    ("The flywheel turns slowly at first.", GenerationParams(max_tokens=18, stop=["e"])),
    ("Two plus two?", GenerationParams(max_tokens=33, temperature=1.2, top_p=0.8, seed=3)),
]


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def run_together(jobs: Sequence[Callable[[], Any]]) -> list[Any]:
    """Call every job on its own thread, all released at once; results in job order."""
    results: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def work(i: int) -> None:
        barrier.wait()
        results[i] = jobs[i]()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def llama(random_llama: tuple[Any, Any]) -> TransformersChatModel:
    return TransformersChatModel(*random_llama, name="tiny-llama", quantize="none")


def test_concurrent_requests_share_steps_and_equal_their_solo_runs(
    llama: TransformersChatModel,
) -> None:
    solo = [llama.chat(user(text), params) for text, params in JOBS]

    def streamed(messages: list[Message], params: GenerationParams) -> Completion:
        deltas = list(llama.stream(messages, params))
        last = deltas[-1]
        assert last.finish_reason is not None and last.usage is not None
        text = "".join(d.text for d in deltas)
        return Completion(text=text, finish_reason=last.finish_reason, usage=last.usage)

    calls = [streamed if i % 2 else llama.chat for i in range(len(JOBS))]
    jobs: list[Callable[[], Completion]] = [
        partial(call, user(text), params) for call, (text, params) in zip(calls, JOBS, strict=True)
    ]
    together = run_together(jobs)
    assert llama._batcher is not None and llama._batcher.peak_rows > 1  # really batched
    assert [c.text for c in together] == [c.text for c in solo]
    assert [c.usage for c in together] == [c.usage for c in solo]
    assert [c.finish_reason for c in together] == [c.finish_reason for c in solo]
    assert solo[1].usage.completion_tokens == 7  # the short one left the batch early


def test_chat_batch_equals_solo_runs_and_keeps_order(llama: TransformersChatModel) -> None:
    params = GenerationParams(max_tokens=20)
    texts = [text for text, _ in JOBS]
    batch = llama.chat_batch([user(t) for t in texts], params)
    assert [c.text for c in batch] == [llama.chat(user(t), params).text for t in texts]


def test_parrot_in_a_crowd_still_stops_at_its_end_token(parrot: tuple[Any, Any]) -> None:
    runtime = TransformersChatModel(*parrot, name="parrot", quantize="none")
    params = GenerationParams(max_tokens=64)
    jobs: list[Callable[[], Completion]] = [
        lambda: runtime.chat(user(PARROT_QUESTION), params),
        lambda: runtime.chat(user("a much longer and different prompt " * 3), params),
        lambda: runtime.chat(user("hi"), GenerationParams(max_tokens=5)),
    ]
    first, *_ = run_together(jobs)
    assert first.text == PARROT_ANSWER
    assert first.finish_reason == "stop"


def test_closed_stream_frees_its_row(llama: TransformersChatModel) -> None:
    params = GenerationParams(max_tokens=400, temperature=1.0, seed=1)
    deltas = llama.stream(user("hi"), params)
    assert isinstance(deltas, Generator)
    first = next(deltas)
    assert 1 <= first.completion_tokens < 400
    deltas.close()  # a client disconnect
    batcher = llama._batcher
    assert batcher is not None
    deadline = time.monotonic() + 5
    while batcher._running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not batcher._running
    # The runtime keeps serving afterwards.
    assert llama.chat(user("hi"), GenerationParams(max_tokens=3)).usage.completion_tokens == 3


def test_int8_batch_runs_and_answers(parrot: tuple[Any, Any]) -> None:
    runtime = TransformersChatModel(*parrot, name="parrot", quantize="int8")
    params = GenerationParams(max_tokens=64)
    batch = runtime.chat_batch([user(PARROT_QUESTION), user("hello"), user("hi")], params)
    assert batch[0].text == PARROT_ANSWER
