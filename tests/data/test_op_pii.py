from __future__ import annotations

import copy
import pickle

import pydantic
import pytest

from feilun.core.registry import lookup
from feilun.data.items import Item, Rejection
from feilun.data.operators.pii import Pii


def test_registered_under_its_name() -> None:
    assert lookup("operators", "pii") is Pii


def test_mask_is_the_default_action() -> None:
    text = "张三，身份证11010519491231002X，手机138-1234-5678，邮箱a.b@example.com，IP 10.1.2.3"
    result = Pii().process(Item("d", text, {"source": "s"}))
    assert isinstance(result, Item)
    assert result.text == "张三，身份证[身份证号]，手机[手机号]，邮箱[邮箱]，IP [IP地址]"
    assert result.meta == {"source": "s", "pii": {"email": 1, "id_card": 1, "mobile": 1, "ip": 1}}
    english = Pii(Pii.Params(mask_language="en", masks={"email": "<email>"})).process(
        Item("d", "call 010-62345678 or mail a@example.org")
    )
    assert isinstance(english, Item)
    assert english.text == "call [PHONE] or mail <email>"


def test_drop_and_keep_actions() -> None:
    op = Pii(Pii.Params(actions={"id_card": "drop", "ip": "keep"}))
    dropped = op.process(Item("a", "身份证11010519491231002X 和 11010519491231002X"))
    assert isinstance(dropped, Rejection)
    assert dropped.reason == "pii: contains id_card (2)"
    kept = op.process(Item("b", "IP 10.1.2.3, phone 13812345678"))
    assert isinstance(kept, Item)
    assert kept.text == "IP 10.1.2.3, phone [手机号]"
    assert kept.meta["pii"] == {"mobile": 1, "ip": 1}
    clean = Pii(Pii.Params(default_action="drop")).process(Item("c", "没有个人信息。"))
    assert isinstance(clean, Item) and clean.meta["pii"] == {}


def test_unknown_kind_or_action_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        Pii.Params.model_validate({"actions": {"passport": "mask"}})
    with pytest.raises(pydantic.ValidationError):
        Pii.Params.model_validate({"default_action": "hide"})


def test_survives_pickle_and_leaves_input_unchanged() -> None:
    op = Pii(Pii.Params(actions={"email": "keep"}, masks={"mobile": "[M]"}))
    clone = pickle.loads(pickle.dumps(op))
    item = Item("d", "a@b.cn 13812345678", {"nested": {"x": 1}})
    before = copy.deepcopy(item)
    assert clone.process(item) == op.process(item)
    assert clone.process(item).text == "a@b.cn [M]"  # type: ignore[union-attr]
    assert item == before
