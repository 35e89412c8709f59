"""Chat and text completions through the official `openai` client against the real server."""

from __future__ import annotations

from typing import Any

import httpx

PROMPT = [{"role": "user", "content": "What is the capital of France?"}]


def test_models_lists_what_the_key_may_use(server: Any) -> None:
    listed = [m.id for m in server.client().models.list()]
    assert listed == ["tiny", "tiny-faulty", "tiny-paced", server.embedder.name]
    assert [m.id for m in server.client(server.keys["restricted"]).models.list()] == []


def test_chat_returns_openai_shape_and_settles(server: Any) -> None:
    raw = server.client().chat.completions.with_raw_response.create(
        model="tiny", messages=PROMPT, max_tokens=8, temperature=0, user="u-1"
    )
    trace_id = raw.headers["x-feilun-trace-id"]
    reply = raw.parse()
    assert reply.id == f"chatcmpl-{trace_id}"
    assert reply.object == "chat.completion"
    assert reply.model == "tiny"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 1 <= reply.usage.completion_tokens <= 8
    assert reply.model_extra["feilun"] == {
        "trace_id": trace_id,
        "model_ref": "tiny@1",
        "usage_source": "tokenizer",
    }
    outcome = server.ledger.outcome(trace_id)
    assert outcome.status == "ok"
    assert outcome.endpoint == "chat.completions"
    assert outcome.model == "tiny@1"
    assert outcome.prompt_tokens == reply.usage.prompt_tokens
    assert outcome.completion_tokens == reply.usage.completion_tokens
    assert outcome.request["user"] == "u-1"


def test_prompt_tokens_come_from_the_model_tokenizer(server: Any, tiny_chat_model: Any) -> None:
    from feilun.core.records import Message

    reply = server.client().chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=2, temperature=0
    )
    expected = tiny_chat_model.count_tokens([Message(**m) for m in PROMPT])
    assert reply.usage.prompt_tokens == expected


def test_content_parts_are_joined_like_a_string(server: Any) -> None:
    client = server.client()
    text = PROMPT[0]["content"]
    parts = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    a = client.chat.completions.create(model="tiny", messages=parts, max_tokens=6, temperature=0)
    b = client.chat.completions.create(model="tiny", messages=PROMPT, max_tokens=6, temperature=0)
    assert a.choices[0].message.content == b.choices[0].message.content


def test_stream_text_equals_non_stream_for_greedy(server: Any) -> None:
    client = server.client()
    whole = client.chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=12, temperature=0
    )
    stream = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=PROMPT,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    trace_id = stream.headers["x-feilun-trace-id"]
    chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == f"chatcmpl-{trace_id}" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == []  # the usage chunk
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    outcome = server.ledger.outcome(trace_id)
    assert (outcome.status, outcome.completion_tokens) == ("ok", whole.usage.completion_tokens)
    assert outcome.response["choices"][0]["text"] == text


def test_stream_without_include_usage_has_no_usage_chunk(server: Any) -> None:
    chunks = list(
        server.client().chat.completions.create(
            model="tiny", messages=PROMPT, max_tokens=4, temperature=0, stream=True
        )
    )
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_n_gives_n_choices_and_sums_usage(server: Any) -> None:
    client = server.client()
    reply = client.chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=5, temperature=0, n=2
    )
    assert [c.index for c in reply.choices] == [0, 1]
    assert reply.choices[0].message.content == reply.choices[1].message.content  # greedy
    single = client.chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=5, temperature=0
    )
    assert reply.usage.completion_tokens == 2 * single.usage.completion_tokens
    assert reply.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt is read once
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=PROMPT, max_tokens=5, temperature=0, n=2, stream=True
        )
    )
    for index in (0, 1):
        text = "".join(
            c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == index
        )
        assert text == reply.choices[index].message.content


def test_stop_ends_the_answer_before_the_stop_string(server: Any) -> None:
    client = server.client()
    free = (
        client.chat.completions.create(model="tiny", messages=PROMPT, max_tokens=20, temperature=0)
        .choices[0]
        .message.content
    )
    stop = free[4:6]
    assert len(stop) == 2
    reply = client.chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=20, temperature=0, stop=[stop]
    )
    assert reply.choices[0].message.content == free[: free.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_reproducible(server: Any) -> None:
    client = server.client()

    def sample(seed: int) -> str:
        return (
            client.chat.completions.create(
                model="tiny", messages=PROMPT, max_tokens=12, temperature=1.0, seed=seed
            )
            .choices[0]
            .message.content
        )

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_max_tokens_and_max_completion_tokens_are_respected(server: Any) -> None:
    client = server.client()
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        reply = client.chat.completions.create(
            model="tiny", messages=PROMPT, temperature=0, **limit
        )
        assert reply.usage.completion_tokens <= 3
        assert reply.choices[0].finish_reason in ("length", "stop")


def test_completions_use_the_prompt_as_one_user_message(server: Any) -> None:
    client = server.client()
    prompt = PROMPT[0]["content"]
    raw = client.completions.with_raw_response.create(
        model="tiny", prompt=prompt, max_tokens=6, temperature=0
    )
    reply = raw.parse()
    chat = client.chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=6, temperature=0
    )
    assert reply.object == "text_completion"
    assert reply.id == f"cmpl-{raw.headers['x-feilun-trace-id']}"
    assert reply.choices[0].text == chat.choices[0].message.content
    assert reply.usage.prompt_tokens == chat.usage.prompt_tokens
    assert server.ledger.outcome(raw.headers["x-feilun-trace-id"]).endpoint == "completions"
    stream = client.completions.create(
        model="tiny",
        prompt=[prompt, prompt],
        max_tokens=6,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    for index in (0, 1):
        text = "".join(
            c.choices[0].text for c in chunks if c.choices and c.choices[0].index == index
        )
        assert text == reply.choices[0].text
    assert chunks[-1].usage.prompt_tokens == 2 * reply.usage.prompt_tokens


def test_health_and_metrics_need_no_key(server: Any) -> None:
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    server.client().chat.completions.create(
        model="tiny", messages=PROMPT, max_tokens=2, temperature=0
    )
    text = httpx.get(f"{server.url}/metrics").text
    assert (
        'feilun_http_requests_total{method="POST",route="/v1/chat/completions",status="200"}'
        in text
    )
    assert 'feilun_prompt_tokens_total{model="tiny@1"}' in text
    assert 'feilun_completion_tokens_total{model="tiny@1"}' in text
    assert "feilun_http_request_duration_seconds_bucket" in text
    assert "feilun_streams_in_flight" in text
