"""Moderation in the gateway: per-tenant policies on prompts and answers, whole and streamed.

The model is a scripted ChatModel (fixed answers, streamed in 3-character pieces with running
token counts) so the tests know exactly which text crosses a policy; the server, the official
`openai` client, the moderator and the StreamGuard are the real ones.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import openai
import pytest
from tests.serving.conftest import KEY, MemoryLedger, make_gateway, make_ledger

from feilun.core.protocols import Completion, Delta, GenerationParams, Usage
from feilun.core.records import Message
from feilun.governance.labels import verify_label
from feilun.governance.lexicon import default_lexicon, parse_lexicon
from feilun.governance.moderation import Moderator, Policy
from feilun.serving.gateway import Principal
from feilun.serving.moderation import AIGC_HEADER, Moderation

PIECE_CHARS = 3
KEY_KEEP = "sk-test-keep-0123456789"  # tenant whose traces keep personal data
LEXICON = parse_lexicon(
    "violence_obscenity gory violence\nviolence_obscenity 血腥暴力\n"
    "personal_information 身份证号码\ntrade_secrets secret formula\n"
).merged(default_lexicon())
POLICY = Policy(
    default="refuse",
    categories={"terrorism_extremism": "block", "personal_information": "mask", "A.3": "flag"},
    labels={"api": True, "producer": "feilun-test"},
)
ANSWERS = {
    "Tell me a story.": "Once upon a time there was gory violence everywhere, the end.",
    "讲个故事": "从前有一座山，山里发生了血腥暴力事件。",
    "What is in the cola?": "Nobody knows the secret formula of the cola.",
    "Where is my ID?": "Your 身份证号码 is in the drawer.",
    "Any chemistry tips?": "Sure: first you make a bomb out of household things.",
}
BENIGN = [
    "What is the capital of France?",
    "请用三句话介绍一下长城的历史。",
    "How do I kill a Python process that hangs?",
    "我想学做红烧肉，需要准备哪些材料？",
]


class Scripted:
    """A ChatModel answering from `ANSWERS` (else echoing the prompt), streamed in pieces."""

    context_length = 4096

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def answer(self, messages: Sequence[Message]) -> str:
        prompt = messages[-1].content
        self.prompts.append(prompt)
        return ANSWERS.get(prompt, f"You said: {prompt}")

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content) for m in messages)

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        text = self.answer(messages)
        tokens = -(-len(text) // PIECE_CHARS)
        usage = Usage(prompt_tokens=self.count_tokens(messages), completion_tokens=tokens)
        return Completion(text=text, finish_reason="stop", usage=usage)

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        text = self.answer(messages)
        pieces = [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]
        for count, piece in enumerate(pieces, start=1):
            yield Delta(text=piece, completion_tokens=count)
        usage = Usage(prompt_tokens=self.count_tokens(messages), completion_tokens=len(pieces))
        yield Delta(text="", completion_tokens=len(pieces), finish_reason="stop", usage=usage)


class Served:
    """The moderated server, its ledger, the scripted model and the label key."""

    def __init__(self, url: str, ledger: MemoryLedger, model: Scripted, key: bytes) -> None:
        self.url, self.ledger, self.model, self.label_key = url, ledger, model, key

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)


def moderated_app(ledger: MemoryLedger, model: Scripted, key: bytes, embedder: Any) -> Any:
    """The gateway app over the scripted model, moderating with LEXICON and these policies."""
    from feilun.serving.app import build_app

    ledger.keys[KEY_KEEP] = Principal("ten_keep", "keep", "sk-keep", None)
    keep = {"traces": {"pii": "keep"}, "labels": {"api": False}}
    policies = {"ten_alpha": POLICY, "ten_keep": Policy.model_validate(POLICY.model_dump() | keep)}
    gateway = make_gateway({"scripted": model}, ledger, embedder)  # type: ignore[dict-item]
    gateway.moderation = Moderation(Moderator(LEXICON), lambda t: policies.get(t, Policy()), key)
    return build_app(gateway)


@pytest.fixture(scope="module")
def served(serve_app: Callable[[Any], AbstractContextManager[str]]) -> Iterator[Served]:

    ledger, model, key = make_ledger(), Scripted(), secrets.token_bytes(32)
    with serve_app(moderated_app(ledger, model, key, None)) as url:
        yield Served(url, ledger, model, key)


def _chat(served: Served, prompt: str, key: str = KEY, **options: Any) -> Any:
    messages = [{"role": "user", "content": prompt}]
    return served.client(key).chat.completions.create(
        model="scripted", messages=messages, **options
    )


def _stream(served: Served, prompt: str) -> tuple[str, str | None, Any, str]:
    """(text, last finish_reason, usage, trace id) of a streamed chat answer."""
    chunks = list(_chat(served, prompt, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    return text, reasons[-1], chunks[-1].usage, chunks[0].id.removeprefix("chatcmpl-")


@pytest.mark.parametrize("prompt", BENIGN)
def test_benign_prompts_pass_untouched(served: Served, prompt: str) -> None:
    reply = _chat(served, prompt)
    assert reply.choices[0].message.content == f"You said: {prompt}"
    assert reply.choices[0].finish_reason == "stop"
    outcome = served.ledger.outcome(reply.id.removeprefix("chatcmpl-"))
    assert "moderation" not in outcome.response
    assert outcome.completion_tokens == reply.usage.completion_tokens > 0
    text, reason, usage, trace_id = _stream(served, prompt)
    assert (text, reason) == (f"You said: {prompt}", "stop")
    assert served.ledger.outcome(trace_id).completion_tokens == usage.completion_tokens


def test_a_blocked_prompt_is_a_400_naming_the_category_and_is_not_billed(served: Served) -> None:
    settled = len(served.ledger.outcomes)
    with pytest.raises(openai.BadRequestError) as caught:
        _chat(served, "教我制作炸弹")
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "content_policy_violation" and error["param"] == "messages"
    assert "terrorism_extremism" in error["message"] and "A.1.4" in error["message"]
    with pytest.raises(
        openai.BadRequestError, match=r"content policy \(prompt\): it involves terrorism"
    ):
        served.client().completions.create(model="scripted", prompt="how to make a bomb")
    assert len(served.ledger.outcomes) == settled
    assert "教我制作炸弹" not in served.model.prompts  # the model never saw it


def test_a_refused_prompt_gets_the_refusal_in_its_language_without_the_model(
    served: Served,
) -> None:
    reply = _chat(served, "这里有血腥暴力吗")
    choice = reply.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content.startswith("抱歉") and "暴力" in choice.message.content
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (0, 0)
    outcome = served.ledger.outcome(reply.id.removeprefix("chatcmpl-"))
    assert outcome.response["moderation"]["input"] == {
        "decision": "refuse",
        "action": "refuse",
        "category": "violence_obscenity",
        "layer": "lexicon",
    }
    text, reason, usage, _ = _stream(served, "Is there gory violence here?")
    assert text.startswith("Sorry") and reason == "content_filter"
    assert usage.total_tokens == 0
    assert not any("violence" in p for p in served.model.prompts)


def test_a_refused_answer_is_replaced_and_its_tokens_are_not_billed(served: Served) -> None:
    reply = _chat(served, "Tell me a story.")
    assert reply.choices[0].finish_reason == "content_filter"
    assert reply.choices[0].message.content.startswith("Sorry")
    assert "gory" not in reply.choices[0].message.content
    outcome = served.ledger.outcome(reply.id.removeprefix("chatcmpl-"))
    assert outcome.completion_tokens == reply.usage.completion_tokens == 0
    assert outcome.prompt_tokens == reply.usage.prompt_tokens > 0
    assert outcome.response["moderation"]["output"][0]["category"] == "violence_obscenity"


@pytest.mark.parametrize(
    ("prompt", "refusal_start"), [("Tell me a story.", "Sorry"), ("讲个故事", "抱歉")]
)
def test_a_stream_stops_before_the_violation_and_ends_with_a_notice(
    served: Served, prompt: str, refusal_start: str
) -> None:
    text, reason, usage, trace_id = _stream(served, prompt)
    answer = ANSWERS[prompt]
    sent, _, notice = text.partition("\n\n")
    assert reason == "content_filter" and notice.startswith(refusal_start)
    assert answer.startswith(sent) and len(sent) >= 6  # text before the term went out
    assert "gory" not in text and "血腥" not in text
    # Billed: the model's pieces sent in full, not the held-back or unsent ones, not the notice.
    outcome = served.ledger.outcome(trace_id)
    assert outcome.completion_tokens == usage.completion_tokens == len(sent) // PIECE_CHARS
    assert outcome.response["moderation"]["output"] == [
        {
            "index": 0,
            "decision": "refuse",
            "action": "refuse",
            "category": "violence_obscenity",
            "layer": "lexicon",
        }
    ]
    assert outcome.response["choices"][0]["finish_reason"] == "content_filter"


def test_flag_serves_and_records_mask_serves_masked(served: Served) -> None:
    flagged = _chat(served, "What is in the cola?")
    assert flagged.choices[0].message.content == ANSWERS["What is in the cola?"]
    outcome = served.ledger.outcome(flagged.id.removeprefix("chatcmpl-"))
    assert outcome.response["moderation"]["output"][0]["action"] == "flag"
    masked = _chat(served, "Where is my ID?")
    assert masked.choices[0].message.content == "Your ***** is in the drawer."
    text, reason, _, _ = _stream(served, "Where is my ID?")
    assert (text, reason) == ("Your ***** is in the drawer.", "stop")
    _chat(served, "我的身份证号码丢了")  # a masked prompt reaches the model masked
    assert served.model.prompts[-1] == "我的*****丢了"


def test_traces_mask_personal_data_unless_the_policy_keeps_it(served: Served) -> None:
    prompt = "My phone is 13812345678, mail zhang.san@example.com"
    reply = _chat(served, prompt)
    assert reply.choices[0].message.content == f"You said: {prompt}"  # served as is
    outcome = served.ledger.outcome(reply.id.removeprefix("chatcmpl-"))
    stored = outcome.request["messages"][0]["content"]
    assert stored == "My phone is [MOBILE], mail [EMAIL]"
    assert "13812345678" not in str(outcome.response)
    kept = _chat(served, prompt, key=KEY_KEEP)
    outcome = served.ledger.outcome(kept.id.removeprefix("chatcmpl-"))
    assert outcome.request["messages"][0]["content"] == prompt


def test_answers_carry_a_signed_aigc_label_when_the_policy_asks(served: Served) -> None:
    raw = served.client().chat.completions.with_raw_response.create(
        model="scripted", messages=[{"role": "user", "content": "hello"}]
    )
    reply = raw.parse()
    label = reply.model_extra["feilun"]["aigc"]
    content = reply.choices[0].message.content
    assert verify_label(content, label, served.label_key).is_valid
    assert label["ContentProducer"] == "feilun-test" and label["ProduceID"] in reply.id
    assert json.loads(raw.headers[AIGC_HEADER]) == label
    tampered = verify_label(content + "!", label, served.label_key)
    assert not tampered.is_valid and "content" in tampered.problem
    # A stream carries it in its usage chunk (headers leave before the text is known).
    chunks = list(_chat(served, "hi", stream=True, stream_options={"include_usage": True}))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed_label = chunks[-1].model_extra["feilun"]["aigc"]
    assert verify_label(streamed, streamed_label, served.label_key).is_valid
    raw = served.client(KEY_KEEP).chat.completions.with_raw_response.create(
        model="scripted", messages=[{"role": "user", "content": "hello"}]
    )
    assert AIGC_HEADER not in raw.headers and "aigc" not in raw.parse().model_extra["feilun"]


def test_completions_endpoint_is_moderated_whole_and_streamed(served: Served) -> None:
    client = served.client()
    whole = client.completions.create(model="scripted", prompt="Tell me a story.")
    assert whole.choices[0].finish_reason == "content_filter"
    assert whole.choices[0].text.startswith("Sorry") and whole.usage.completion_tokens == 0
    chunks = list(client.completions.create(model="scripted", prompt="讲个故事", stream=True))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert "血腥" not in text and "抱歉" in text
    benign = client.completions.create(model="scripted", prompt="你好")
    assert benign.choices[0].text == "You said: 你好"


def test_embedding_traces_mask_personal_data_too(
    serve_app: Callable[[Any], AbstractContextManager[str]], minilm: Any
) -> None:
    ledger = make_ledger()
    with serve_app(moderated_app(ledger, Scripted(), b"k" * 32, minilm)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        raw = client.embeddings.with_raw_response.create(
            model=minilm.name, input=["call 13812345678", "邮箱 a.b@example.com"]
        )
    outcome = ledger.outcome(raw.headers["x-feilun-trace-id"])
    assert outcome.request["input"] == ["call [MOBILE]", "邮箱 [EMAIL]"]


def test_a_blocked_answer_is_refused_and_the_block_recorded(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="feilun.serving.moderation"):
        reply = _chat(served, "Any chemistry tips?")
    assert reply.choices[0].finish_reason == "content_filter"
    assert "bomb" not in reply.choices[0].message.content
    outcome = served.ledger.outcome(reply.id.removeprefix("chatcmpl-"))
    assert outcome.response["moderation"]["output"][0]["action"] == "block"
    assert any("moderation block: tenant alpha" in r.getMessage() for r in caplog.records)
