from __future__ import annotations

import pydantic
import pytest

from feilun.core.records import RECORD_TYPES, BaseModel, Dataset, hash_content, new_id


def test_ids_are_unique_time_ordered_and_prefixed() -> None:
    ids = [new_id("adp") for _ in range(200)]
    assert len(set(ids)) == 200
    assert all(i.startswith("adp_") for i in ids)
    assert ids[0][:14] <= ids[-1][:14]  # the time part sorts


def test_content_hash_ignores_identity_but_not_content() -> None:
    a = Dataset(name="handbook", count=3, inputs=["doc_1"])
    b = Dataset(name="handbook", count=3, inputs=["doc_1"])
    c = Dataset(name="handbook", count=4, inputs=["doc_1"])
    assert a.id != b.id
    assert a.content_hash == b.content_hash
    assert a.content_hash != c.content_hash


def test_records_are_frozen_and_reject_unknown_fields() -> None:
    record = BaseModel(name="m", source="gguf", location="/x.gguf")
    with pytest.raises(pydantic.ValidationError):
        record.name = "other"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="extra"):
        BaseModel(name="m", source="gguf", location="/x", colour="red")  # type: ignore[call-arg]


def test_round_trip_preserves_identity() -> None:
    record = BaseModel(name="m", source="gguf", location="/x.gguf", parameters=7)
    again = BaseModel.model_validate(record.model_dump(mode="json"))
    assert again == record
    assert again.ref == "m@1"


def test_every_kind_is_registered_once() -> None:
    assert len({cls.id_prefix for cls in RECORD_TYPES.values()}) == len(RECORD_TYPES)
    assert len({cls.kind for cls in RECORD_TYPES.values()}) == len(RECORD_TYPES)
    assert all(kind == cls.kind for kind, cls in RECORD_TYPES.items())


def test_hash_content_is_canonical() -> None:
    assert hash_content({"a": 1, "b": "飞轮"}) == hash_content({"b": "飞轮", "a": 1})
