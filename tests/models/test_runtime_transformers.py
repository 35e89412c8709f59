from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feilun.core.errors import ConfigError, InputTooLong
from feilun.core.protocols import ChatModel, GenerationParams
from feilun.core.records import BaseModel, Message
from feilun.models.runtimes import transformers as runtime_module
from feilun.models.runtimes.transformers import TransformersChatModel, load_runtime

from .conftest import PARROT_ANSWER, PARROT_QUESTION

PROMPTS = [
    "hi",
    "What is the capital of France?",
    "数据飞轮从文档开始。团队收集手册、工单和对话记录",
]
GREEDY = GenerationParams(max_tokens=24)


def user(text: str) -> list[Message]:
    return [Message(role="user", content=text)]


def hf_greedy(model: Any, tokenizer: Any, runtime: TransformersChatModel, text: str) -> str:
    """The reference: transformers' own generate(do_sample=False) with the same stop tokens."""
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(
        **inputs,
        max_new_tokens=GREEDY.max_tokens,
        do_sample=False,
        eos_token_id=sorted(runtime._eos_ids),
        pad_token_id=tokenizer.pad_token_id,
    )  # (1, T + new)
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return str(text).rstrip("\ufffd")  # the runtime drops a half character cut by max_tokens


@pytest.fixture(scope="module")
def llama_fp32(random_llama: tuple[Any, Any]) -> TransformersChatModel:
    return TransformersChatModel(*random_llama, name="tiny-llama", quantize="none")


@pytest.fixture(scope="module")
def parrot_fp32(parrot: tuple[Any, Any]) -> TransformersChatModel:
    return TransformersChatModel(*parrot, name="parrot", quantize="none")


def test_implements_chat_model(llama_fp32: TransformersChatModel) -> None:
    assert isinstance(llama_fp32, ChatModel)


@pytest.mark.parametrize("arch", ["random_llama", "random_qwen2"])
def test_greedy_equals_hf_generate(arch: str, request: pytest.FixtureRequest) -> None:
    model, tokenizer = request.getfixturevalue(arch)
    runtime = TransformersChatModel(model, tokenizer, name=arch, quantize="none")
    for text in PROMPTS:
        completion = runtime.chat(user(text), GREEDY)
        assert completion.text == hf_greedy(model, tokenizer, runtime, text)
        assert completion.text.strip()


def test_fallback_path_without_lean_forward_equals_hf_generate(
    random_qwen2: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "supports_lean", lambda model: False)
    runtime = TransformersChatModel(*random_qwen2, name="fallback", quantize="none")
    assert runtime._lean is None
    assert runtime.chat(user(PROMPTS[1]), GREEDY).text == hf_greedy(
        *random_qwen2, runtime, PROMPTS[1]
    )
    batch = runtime.chat_batch([user(t) for t in PROMPTS], GREEDY)
    assert [c.text for c in batch] == [runtime.chat(user(t), GREEDY).text for t in PROMPTS]


def test_parrot_answers_and_stops_at_end_token(parrot_fp32: TransformersChatModel) -> None:
    completion = parrot_fp32.chat(user(PARROT_QUESTION), GenerationParams(max_tokens=64))
    assert completion.text == PARROT_ANSWER
    assert completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == parrot_fp32.count_tokens(user(PARROT_QUESTION))
    assert 0 < completion.usage.completion_tokens < 64
    assert completion.prefill_s > 0
    assert completion.decode_s > 0


@pytest.mark.parametrize("stop", ["France", "ital of Fr", "巴黎", "。The", "Paris."])
def test_stop_string_cuts_chat_and_stream(parrot_fp32: TransformersChatModel, stop: str) -> None:
    params = GenerationParams(max_tokens=64, stop=["never-appears", stop])
    completion = parrot_fp32.chat(user(PARROT_QUESTION), params)
    assert completion.text == PARROT_ANSWER[: PARROT_ANSWER.index(stop)]
    assert completion.finish_reason == "stop"
    deltas = list(parrot_fp32.stream(user(PARROT_QUESTION), params))
    assert "".join(d.text for d in deltas) == completion.text
    assert deltas[-1].finish_reason == "stop"


def test_stream_concatenates_to_chat_without_broken_chinese(
    parrot_fp32: TransformersChatModel,
) -> None:
    params = GenerationParams(max_tokens=64)
    deltas = list(parrot_fp32.stream(user(PARROT_QUESTION), params))
    assert all("\ufffd" not in d.text for d in deltas)
    assert len(deltas) > 5  # really incremental
    assert all(d.finish_reason is None and d.usage is None for d in deltas[:-1])
    last = deltas[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert last.usage.prompt_tokens == parrot_fp32.count_tokens(user(PARROT_QUESTION))
    assert "".join(d.text for d in deltas) == parrot_fp32.chat(user(PARROT_QUESTION), params).text


def test_stream_equals_chat_for_greedy_on_random_model(llama_fp32: TransformersChatModel) -> None:
    for text in PROMPTS:
        streamed = "".join(d.text for d in llama_fp32.stream(user(text), GREEDY))
        assert streamed == llama_fp32.chat(user(text), GREEDY).text


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    max_tokens=st.integers(1, 20),
    temperature=st.sampled_from([0.0, 0.7, 1.5]),
    top_p=st.sampled_from([0.5, 1.0]),
    seed=st.integers(0, 2**32),
)
def test_max_tokens_respected_exactly(
    llama_fp32: TransformersChatModel, max_tokens: int, temperature: float, top_p: float, seed: int
) -> None:
    params = GenerationParams(
        max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
    )
    completion = llama_fp32.chat(user("hi"), params)
    assert 1 <= completion.usage.completion_tokens <= max_tokens
    if completion.finish_reason == "length":
        assert completion.usage.completion_tokens == max_tokens
    deltas = list(llama_fp32.stream(user("hi"), params))
    assert deltas[-1].usage == completion.usage
    assert "".join(d.text for d in deltas) == completion.text


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32))
def test_same_seed_same_sample(llama_fp32: TransformersChatModel, seed: int) -> None:
    params = GenerationParams(max_tokens=16, temperature=1.0, seed=seed)
    first = llama_fp32.chat(user("hi"), params)
    assert llama_fp32.chat(user("hi"), params).text == first.text


def test_different_seeds_differ_and_global_rng_is_untouched(
    llama_fp32: TransformersChatModel,
) -> None:
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    texts = {
        llama_fp32.chat(user("hi"), GenerationParams(max_tokens=16, temperature=1.0, seed=s)).text
        for s in range(4)
    }
    assert torch.equal(torch.rand(1), expected)
    assert len(texts) == 4
    greedy = llama_fp32.chat(user("hi"), GenerationParams(max_tokens=16))
    assert greedy.text not in texts


def test_input_too_long_names_numbers(random_llama: tuple[Any, Any]) -> None:
    runtime = TransformersChatModel(
        *random_llama, name="tiny-32", context_length=64, quantize="none"
    )
    prompt_tokens = runtime.count_tokens(user("hi"))
    with pytest.raises(InputTooLong) as info:
        runtime.chat(user("hi"), GenerationParams(max_tokens=64))
    assert f"prompt is {prompt_tokens} tokens + max_tokens 64 > context 64 of tiny-32" in str(
        info.value
    )
    assert "lower max_tokens" in str(info.value)
    with pytest.raises(InputTooLong, match="tokens > context 64 of tiny-32"):
        runtime.stream(user("word " * 100), GenerationParams(max_tokens=1))  # raises eagerly
    assert runtime.chat(user("hi"), GenerationParams(max_tokens=64 - prompt_tokens))


def test_context_length_defaults_from_config(llama_fp32: TransformersChatModel) -> None:
    assert llama_fp32.context_length == 512


def test_missing_chat_template_says_how_to_supply_one(random_llama: tuple[Any, Any]) -> None:
    model, tokenizer = random_llama
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    bare.chat_template = None
    runtime = TransformersChatModel(model, bare, name="bare", quantize="none")
    with pytest.raises(ConfigError, match="chat_template"):
        runtime.chat(user("hi"), GREEDY)
    template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    fixed = TransformersChatModel(model, bare, name="bare", chat_template=template, quantize="none")
    assert fixed.count_tokens(user("hi")) == len(bare("hi", add_special_tokens=False)["input_ids"])


def test_chat_batch_equals_one_by_one(llama_fp32: TransformersChatModel) -> None:
    conversations = [user(t) for t in PROMPTS] + [user(PROMPTS[0])]
    batch = llama_fp32.chat_batch(conversations, GREEDY)
    singles = [llama_fp32.chat(c, GREEDY) for c in conversations]
    assert [c.text for c in batch] == [c.text for c in singles]
    assert [c.usage for c in batch] == [c.usage for c in singles]
    assert llama_fp32.chat_batch([], GREEDY) == []


def test_chat_batch_rows_finish_independently(parrot_fp32: TransformersChatModel) -> None:
    params = GenerationParams(max_tokens=40)
    batch = parrot_fp32.chat_batch(
        [user(PARROT_QUESTION), user("hello there, long prompt")], params
    )
    assert batch[0].text == PARROT_ANSWER
    assert batch[0].finish_reason == "stop"
    assert batch[1].text == parrot_fp32.chat(user("hello there, long prompt"), params).text


def test_int8_parrot_still_answers(parrot: tuple[Any, Any]) -> None:
    runtime = TransformersChatModel(*parrot, name="parrot", quantize="int8")
    assert (
        runtime.chat(user(PARROT_QUESTION), GenerationParams(max_tokens=64)).text == PARROT_ANSWER
    )


def _record(folder: Path, **runtime_options: Any) -> BaseModel:
    return BaseModel(
        name="d",
        source="safetensors",
        location=str(folder),
        meta={"runtime_options": runtime_options},
    )


def test_default_quantization_and_unknown_values(tiny_model_dir: Path) -> None:
    cache = tiny_model_dir.parent
    assert load_runtime(_record(tiny_model_dir), cache).quantize == runtime_module.DEFAULT_QUANTIZE
    assert load_runtime(_record(tiny_model_dir, quantize="none"), cache).quantize == "none"
    with pytest.raises(ConfigError, match="int8"):
        load_runtime(_record(tiny_model_dir, quantize="int3"), cache)
    with pytest.raises(ConfigError, match="valid options of runtime 'transformers': quantize"):
        load_runtime(_record(tiny_model_dir, beams=4), cache)


def test_concurrent_callers_get_the_same_answers(llama_fp32: TransformersChatModel) -> None:
    expected = {t: llama_fp32.chat(user(t), GREEDY).text for t in PROMPTS}
    results: dict[int, str] = {}

    def work(i: int) -> None:
        text = PROMPTS[i % len(PROMPTS)]
        if i % 2:
            results[i] = "".join(d.text for d in llama_fp32.stream(user(text), GREEDY))
        else:
            results[i] = llama_fp32.chat(user(text), GREEDY).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: expected[PROMPTS[i % len(PROMPTS)]] for i in range(6)}


@pytest.mark.integration
@pytest.mark.parametrize("quantize", ["int8", "none"])
def test_smollm2_knows_the_capital_of_france(quantize: str, tmp_path: Path) -> None:
    from feilun.models.packaged import SMOLLM2

    path = SMOLLM2.locate()
    if path is None:
        pytest.skip(f"{SMOLLM2.name} is not installed ({SMOLLM2.install_hint})")
    record = BaseModel(
        name=SMOLLM2.name,
        source="gguf",
        location=str(path),
        meta={"runtime_options": {"quantize": quantize}},
    )
    runtime = load_runtime(record, tmp_path / "cache")
    question = user("What is the capital of France?")
    completion = runtime.chat(question, GenerationParams(max_tokens=32))
    assert completion.text == "The capital of France is Paris."
    assert completion.finish_reason == "stop"
    streamed = "".join(d.text for d in runtime.stream(question, GenerationParams(max_tokens=32)))
    assert streamed == completion.text


def test_text_stream_holds_back_half_characters_and_stop_prefixes() -> None:
    from feilun.models.decoding import TextStream, held_back

    raw = "巴黎 is Paris".encode()
    # One token per byte: "巴" and "黎" arrive as three tokens each.
    stream = TextStream(lambda ids: bytes(ids).decode(errors="replace"), stops=["Par", "xyz"])
    pieces = [stream.push(b) for b in raw]
    assert all("\ufffd" not in p for p in pieces)
    assert pieces[:3] == ["", "", "巴"]
    assert "".join(pieces) + stream.finish() == "巴黎 is "
    assert stream.is_stopped
    assert held_back("say P", ["Par"]) == 1
    assert held_back("say Pa", ["Par", "a"]) == 2
    assert held_back("say", ["Par"]) == 0


@pytest.mark.parametrize("use_lean", [True, False])
def test_deltas_carry_a_running_completion_token_count(
    random_llama: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, use_lean: bool
) -> None:
    if not use_lean:
        monkeypatch.setattr(runtime_module, "supports_lean", lambda model: False)
    runtime = TransformersChatModel(*random_llama, name="counts", quantize="none")
    for text in PROMPTS:
        deltas = list(runtime.stream(user(text), GREEDY))
        counts = [d.completion_tokens for d in deltas]
        assert counts == sorted(counts) and counts[0] >= 1
        assert deltas[-1].usage is not None
        assert counts[-1] == deltas[-1].usage.completion_tokens
        assert counts[-1] == runtime.chat(user(text), GREEDY).usage.completion_tokens
