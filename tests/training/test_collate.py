"""Rows → labelled sequences: the loss mask covers assistant turns only; rows are counted."""

from __future__ import annotations

from typing import Any

import pytest

from feilun.core.errors import ConfigError
from feilun.models.tiny import CHAT_TEMPLATE, build_tiny_tokenizer
from feilun.training.collate import (
    IGNORE,
    collate,
    pack,
    render_chat,
    require_examples,
    split_validation,
    tokenize_chat_rows,
    tokenize_preference_rows,
    tokenize_text_rows,
)

CONVERSATION = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "法国的首都是哪里？"},
    {"role": "assistant", "content": "巴黎。Paris."},
    {"role": "user", "content": "And two plus two?"},
    {"role": "assistant", "content": "Four."},
]


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return build_tiny_tokenizer()


def _labelled_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The maximal runs of labelled tokens."""
    runs: list[list[int]] = []
    previous = IGNORE
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            assert label == token
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(token)
        previous = label
    return runs


def test_loss_mask_covers_exactly_the_assistant_turns(tokenizer: Any) -> None:
    tokens = render_chat(tokenizer, CHAT_TEMPLATE, CONVERSATION)
    # the ids are the reference rendering: transformers' own apply_chat_template
    reference = tokenizer.apply_chat_template(
        CONVERSATION, chat_template=CHAT_TEMPLATE, tokenize=True, return_dict=False
    )
    assert tokens.input_ids == list(reference)
    runs = _labelled_runs(tokens.input_ids, tokens.labels)
    decoded = [tokenizer.decode(run) for run in runs]
    assert decoded == ["巴黎。Paris.<|im_end|>\n", "Four.<|im_end|>\n"]
    unlabelled = tokenizer.decode(
        [t for t, lab in zip(tokens.input_ids, tokens.labels, strict=True) if lab == IGNORE]
    )
    for message in CONVERSATION:
        if message["role"] != "assistant":
            assert message["content"] in unlabelled
    assert tokens.position_ids == list(range(len(tokens.input_ids)))


def test_rows_without_answers_or_too_long_are_counted(tokenizer: Any) -> None:
    long_answer = "The flywheel turns slowly at first. " * 20
    rows = [
        {"messages": CONVERSATION},
        {"messages": [{"role": "user", "content": "hi"}]},
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": long_answer},
            ]
        },
        {"messages": [{"role": "robot", "content": "?"}]},
        {"text": "no messages"},
        "not even an object",
    ]
    limit = len(render_chat(tokenizer, CHAT_TEMPLATE, CONVERSATION).input_ids)
    kept, stats = tokenize_chat_rows(rows, tokenizer, CHAT_TEMPLATE, limit, "truncate")
    assert (stats.rows, stats.kept, stats.truncated) == (6, 2, 1)
    assert stats.skipped == {"no_assistant_turn": 1, "malformed": 3}
    assert all(len(k.input_ids) <= limit for k in kept)
    kept, stats = tokenize_chat_rows(rows, tokenizer, CHAT_TEMPLATE, limit, "skip")
    assert stats.kept == 1 and stats.skipped["too_long"] == 1 and stats.truncated == 0
    # truncated so far that no assistant token is left: skipped, and said why
    _, stats = tokenize_chat_rows(rows[:1], tokenizer, CHAT_TEMPLATE, 20, "truncate")
    assert stats.skipped == {"no_target_after_truncation": 1}
    with pytest.raises(ConfigError, match="no training examples: 1 rows, skipped: 1 no_target"):
        require_examples([], stats, "handbook@1")


def test_packing_restarts_positions_and_never_predicts_across_pieces(tokenizer: Any) -> None:
    a = render_chat(tokenizer, CHAT_TEMPLATE, CONVERSATION[1:3])
    b = render_chat(tokenizer, CHAT_TEMPLATE, CONVERSATION[3:5])
    rows = pack([a, b, a], len(a.input_ids) + len(b.input_ids))
    assert len(rows) == 2
    first = rows[0]
    assert first.input_ids == a.input_ids + b.input_ids
    assert first.position_ids == a.position_ids + b.position_ids
    assert first.labels[len(a.input_ids)] == IGNORE
    assert first.target_count == a.target_count + b.target_count
    batch = collate(rows, pad_id=0)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["position_ids"].shape
    assert batch["labels"][1, len(a.input_ids) :].eq(IGNORE).all()


def test_text_and_preference_rows(tokenizer: Any) -> None:
    blocks, stats = tokenize_text_rows([{"text": "Hello! " * 30}, {"text": " "}, {}], tokenizer, 16)
    assert stats.kept == 1 and stats.skipped == {"empty_text": 1, "malformed": 1}
    assert all(len(b.input_ids) <= 16 for b in blocks) and blocks[0].labels == blocks[0].input_ids
    pairs, stats = tokenize_preference_rows(
        [{"prompt": "2+2?", "chosen": "Four.", "rejected": "Five."}, {"prompt": "x"}],
        tokenizer,
        CHAT_TEMPLATE,
        64,
        "truncate",
    )
    assert stats.kept == 1 and stats.skipped == {"malformed": 1}
    chosen, rejected = pairs[0]
    assert tokenizer.decode(_labelled_runs(chosen.input_ids, chosen.labels)[0]).startswith("Four.")
    assert tokenizer.decode(_labelled_runs(rejected.input_ids, rejected.labels)[0]).startswith(
        "Five."
    )


def test_validation_split_is_seeded_and_disjoint() -> None:
    items = list(range(20))
    train, val = split_validation(items, 0.25, seed=3)
    assert len(val) == 5 and sorted(train + val) == items
    assert split_validation(items, 0.25, seed=3) == (train, val)
    assert split_validation(items, 0.0, seed=3) == (items, [])
