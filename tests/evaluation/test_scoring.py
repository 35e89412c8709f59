from __future__ import annotations

import pytest
import torch

from feilun.evaluation.scoring import HfScorer
from feilun.models.tiny import build_tiny_model

REQUESTS = [
    ("The capital of France is", [" Paris", " Berlin", " B"]),
    ("Answer:", [" A", " C"]),  # every option one token: one row, read at the last position
    ("法国的首都是哪里？答案： ", ["A", "巴黎", "北京"]),  # a trailing space moves to the option
    ("Two plus two is" * 3, [" four", " five"]),
]


def _reference(model, tokenizer, context: str, continuation: str) -> float:
    """Each option on its own, unpadded, full logits: log P(continuation | context)."""
    stripped = context.rstrip(" ")
    context_ids = tokenizer.encode(stripped, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    target = whole[len(context_ids) :]
    with torch.no_grad():
        logprobs = model(torch.tensor([context_ids + target])).logits.log_softmax(-1)[0]
    return sum(logprobs[len(context_ids) - 1 + i, t].item() for i, t in enumerate(target))


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model(init_std=0.3)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_scores_equal_one_option_at_a_time(tiny, batch_size: int) -> None:
    model, tokenizer = tiny
    scorer = HfScorer(model, tokenizer, name="tiny", batch_size=batch_size)
    got = scorer.loglikelihoods(REQUESTS)
    for (context, options), scores in zip(REQUESTS, got, strict=True):
        expected = [_reference(model, tokenizer, context, o) for o in options]
        assert scores == pytest.approx(expected, abs=1e-4)


def test_single_token_options_share_one_forward_row(tiny) -> None:
    model, tokenizer = tiny
    scorer = HfScorer(model, tokenizer, name="tiny")
    assert [len(tokenizer.encode(w)) for w in (" A", " the", " is", " B")] == [1, 1, 1, 2]
    rows = scorer._rows([("Answer:", [" A", " the", " is"]), ("Answer:", [" A", " B"])])
    assert [len(r.targets) for r in rows] == [3, 1, 1]  # " B" makes each option its own row
    assert rows[0].inputs == tokenizer.encode("Answer:")


def test_progress_reports_requests_done(tiny) -> None:
    model, tokenizer = tiny
    seen: list[int] = []
    HfScorer(model, tokenizer, name="tiny", batch_size=2).loglikelihoods(REQUESTS, seen.append)
    assert seen[-1] == len(REQUESTS) and seen == sorted(seen)
