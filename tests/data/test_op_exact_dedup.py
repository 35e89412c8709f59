from __future__ import annotations

import copy
import hashlib
import json
import pickle
from pathlib import Path

import pydantic
import pytest

from feilun.core.registry import lookup
from feilun.data.items import Item
from feilun.data.operators.exact_dedup import ExactDedup

DATA = Path("../shared/data")


def run(operator: ExactDedup, items: list[Item]) -> dict[str, str]:
    return operator.select([(item.id, operator.key(item)) for item in items])


def test_registered_under_its_name() -> None:
    assert lookup("operators", "exact_dedup") is ExactDedup


def test_first_occurrence_kept_and_later_copies_removed_with_reason() -> None:
    items = [
        Item("doc_9", "安全生产 许可证"),
        Item("doc_10", "另一段文字"),
        Item("doc_11", "安全生产许可证"),
        Item("doc_12", "安全生产\u3000许可证\n"),  # ideographic space and a newline
    ]
    assert run(ExactDedup(), items) == {
        "doc_11": "exact_duplicate: of doc_9",
        "doc_12": "exact_duplicate: of doc_9",
    }


def test_real_questions_share_their_contexts() -> None:
    # CMRC 2018 has several questions per paragraph: contexts repeat exactly.
    with (DATA / "cmrc2018" / "trial.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    items = [Item(row["id"], row["context"]) for row in rows]
    expected = {}
    first_of: dict[str, str] = {}
    for row in rows:
        kept = first_of.setdefault(row["context"], row["id"])
        if kept != row["id"]:
            expected[row["id"]] = f"exact_duplicate: of {kept}"
    assert len(first_of) == 256  # per SOURCE.md: 1002 questions over 256 paragraphs
    assert run(ExactDedup(), items) == expected


def test_whitespace_and_case_params() -> None:
    items = [
        Item("a", "Pipeline Safety"),
        Item("b", "pipeline  safety"),
        Item("c", "PipelineSafety"),
    ]
    assert run(ExactDedup(), items) == {"c": "exact_duplicate: of a"}
    strict = ExactDedup(ExactDedup.Params(ignore_whitespace=False))
    assert run(strict, items) == {}
    loose = ExactDedup(ExactDedup.Params(ignore_case=True))
    assert set(run(loose, items)) == {"b", "c"}


def test_key_is_a_stable_16_byte_digest_of_the_canonical_text() -> None:
    operator = ExactDedup(ExactDedup.Params(ignore_case=True))
    key = operator.key(Item("x", " Straße\t1 "))
    assert key == hashlib.blake2b(b"strasse1", digest_size=16).digest()


def test_items_are_not_mutated() -> None:
    items = [Item("a", "  Text ", meta={"k": [1]}), Item("b", "Text")]
    before = copy.deepcopy(items)
    run(ExactDedup(ExactDedup.Params(ignore_case=True)), items)
    assert items == before


def test_pickle_round_trip() -> None:
    operator = ExactDedup(ExactDedup.Params(ignore_case=True))
    clone = pickle.loads(pickle.dumps(operator))
    items = [Item("a", "ABC"), Item("b", "abc")]
    assert clone.params == operator.params
    assert run(clone, items) == run(operator, items) == {"b": "exact_duplicate: of a"}


def test_unknown_params_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        ExactDedup.Params.model_validate({"ignore_punctuation": True})
