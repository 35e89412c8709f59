"""Watermark by tenant policy: `watermark: true` marks that tenant's generations only."""

from __future__ import annotations

from typing import Any

import pytest

from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.governance.lexicon import parse_lexicon
from feilun.governance.moderation import Moderator, Policy
from feilun.governance.watermark import Watermark, detect
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
