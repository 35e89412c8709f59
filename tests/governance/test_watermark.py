"""The green-list text watermark: generation with a tiny random model, detection, bad input,
and per tenant: `watermark: true` in a policy marks that tenant's generations only."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from feilun.core.errors import BadInput, ConfigError
from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.governance.lexicon import parse_lexicon
from feilun.governance.moderation import Moderator, Policy
from feilun.governance.watermark import MIN_TOKENS, Watermark, detect
from feilun.models.runtimes.transformers import TransformersChatModel
from feilun.models.tiny import build_tiny_model
from feilun.serving.gateway import Principal
from feilun.serving.moderation import Moderation, screen_prompt

KEY = bytes(range(32))
PROMPT = [Message(role="user", content="Tell me about gas meters and valves.")]
PARAMS = GenerationParams(max_tokens=200, temperature=1.0, seed=7)


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    """A tiny random Llama whose sampled output is varied."""
    return build_tiny_model("llama", seed=1, init_std=0.3)


def generate(tiny: tuple[Any, Any], watermark: Watermark | None) -> tuple[str, list[int]]:
    model = TransformersChatModel(*tiny, name="tiny", watermark=watermark)
    text = model.chat(PROMPT, PARAMS).text
    return text, model.encode(text)


def test_watermarked_text_is_detected_and_unmarked_text_is_not(tiny: tuple[Any, Any]) -> None:
    marked_text, marked = generate(tiny, Watermark(KEY))
    plain_text, plain = generate(tiny, None)
    assert marked_text != plain_text  # same seed: only the bias differs
    found = detect(marked, Watermark(KEY))
    assert found.is_watermarked and found.z > 5 and found.scored > 100
    assert found.green_fraction > 0.45  # γ = 0.25 without the watermark
    assert "watermark detected" in found.message
    missed = detect(plain, Watermark(KEY))
    assert not missed.is_watermarked and abs(missed.z) < 3


def test_a_wrong_key_does_not_detect(tiny: tuple[Any, Any]) -> None:
    _, marked = generate(tiny, Watermark(KEY))
    other = detect(marked, Watermark(bytes(32)))
    assert not other.is_watermarked and abs(other.z) < 3
    assert "no watermark detected with this deployment's key" in other.message
    assert "cannot be told apart" in other.message


def test_green_share_is_gamma_and_z_is_standard_without_the_key() -> None:
    for gamma in (0.25, 0.5):
        mask = Watermark(KEY, gamma=gamma).green_mask(previous=42, size=50_000)
        assert set(mask) == {0, 1} and abs(sum(mask) / len(mask) - gamma) < 0.01
    rng = random.Random(0)
    zs = [detect([rng.randrange(5_000) for _ in range(200)], Watermark(KEY)).z for _ in range(200)]
    assert abs(statistics.mean(zs)) < 0.2 and 0.8 < statistics.stdev(zs) < 1.2
    assert max(zs) < 4  # no false positive in 200 random texts at the default threshold


def test_repeated_pairs_count_once() -> None:
    watermark = Watermark(KEY)
    ids = list(range(100, 140))
    once, repeated = detect(ids, watermark), detect(ids * 5, watermark)
    assert repeated.scored == once.scored + 1  # the only new pair is (last, first)
    assert abs(repeated.z - once.z) < 1
    with pytest.raises(BadInput, match="2 scored tokens, the minimum is 16"):
        detect([7, 8] * 50 + [7], watermark)


def test_short_text_and_bad_settings_are_refused() -> None:
    with pytest.raises(BadInput, match=f"the minimum is {MIN_TOKENS}"):
        detect(list(range(MIN_TOKENS)), Watermark(KEY))  # 15 pairs
    assert detect(list(range(MIN_TOKENS + 1)), Watermark(KEY)).scored == MIN_TOKENS
    with pytest.raises(ConfigError, match="no green"):
        Watermark(KEY, gamma=0.001)
    with pytest.raises(ConfigError, match="not positive"):
        Watermark(KEY, delta=0.0)


# -- per tenant ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tiny: tuple[Any, Any]) -> TransformersChatModel:
    """The model holding the deployment key, watermarking nobody by default."""
    return TransformersChatModel(*tiny, name="tiny", watermark=Watermark(KEY), use_watermark=False)


def _params_for(policy: Policy) -> GenerationParams:
    """The decoding params the gateway uses for a tenant under `policy`."""
    moderation = Moderation(Moderator(parse_lexicon("violence_obscenity gory")), lambda _: policy)
    principal = Principal("ten_a", "acme", "sk-acme", None)
    screening, _ = screen_prompt(moderation, principal, [PROMPT], "messages")
    assert screening is not None
    return screening.params(PARAMS)


def _z(model: TransformersChatModel, params: GenerationParams) -> float:
    text = model.chat(PROMPT, params).text
    return detect(model.encode(text), Watermark(KEY)).z


def test_a_tenant_with_the_watermark_gets_marked_text_others_do_not(
    model: TransformersChatModel,
) -> None:
    marked = _params_for(Policy.model_validate({"watermark": True}))
    plain = _params_for(Policy())
    assert (marked.watermark, plain.watermark) == (True, None)
    assert _z(model, marked) > 5
    assert abs(_z(model, plain)) < 3


def test_a_request_can_switch_the_deployment_default_off(tiny: tuple[Any, Any]) -> None:
    on_by_default = TransformersChatModel(*tiny, name="tiny", watermark=Watermark(KEY))
    assert _z(on_by_default, PARAMS) > 5
    assert abs(_z(on_by_default, PARAMS.model_copy(update={"watermark": False}))) < 3
