from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pydantic
import pytest

from feilun.core.registry import lookup
from feilun.data.items import Item, Rejection
from feilun.data.operators.normalize import Normalize

DATA = Path("../shared/data")


def norm(text: str, **params: object) -> str:
    return Normalize(Normalize.Params.model_validate(params)).normalize(text)


def test_registered_under_its_name() -> None:
    assert lookup("operators", "normalize") is Normalize


def test_full_width_letters_and_digits_become_ascii_cjk_punctuation_stays() -> None:
    text = "ＧＢ５０２８－２００６《城镇燃气设计规范》，第１条：「总则」。真的吗？是！（注）……"
    assert norm(text) == "GB5028-2006《城镇燃气设计规范》，第1条：「总则」。真的吗？是！（注）……"


def test_cjk_punctuation_follows_nfkc_when_asked() -> None:
    assert norm("第１条，总则！", keep_cjk_punctuation=False) == "第1条,总则!"
    assert norm("一，二；三", cjk_punctuation="；") == "一,二；三"


def test_nfkc_folds_compatibility_characters() -> None:
    assert norm("ﬁle ① ㎏ ｶﾀｶﾅ") == "file 1 kg カタカナ"
    # Without NFKC the ligature stays, but full-width ASCII still becomes half-width.
    assert norm("ﬁle ＡＢＣ", form="none") == "ﬁle ABC"
    assert norm("ﬁle ＡＢＣ", form="none", to_half_width=False) == "ﬁle ＡＢＣ"


def test_invisible_and_control_characters_are_removed() -> None:
    text = "\ufeff安全\u200b生产\u200d法\u00ad\x07\x00 abc\u202edef\u2066x\u2069"
    assert norm(text) == "安全生产法 abcdefx"
    assert norm("a\u200bb", remove_invisible=False) == "a\u200bb"


def test_whitespace_is_tidied() -> None:
    text = "  第一条\t\t为了  加强管理\u3000\u3000制定本条例。  \r\n\r\n\r\n\r\n"
    text += "  第二条 适用…\x0c第三条"
    assert norm(text) == "第一条 为了 加强管理 制定本条例。\n\n第二条 适用…\n\n第三条"
    assert norm("a\n\n\n\nb", max_blank_lines=0) == "a\nb"
    assert norm("a\n\n\n\nb", max_blank_lines=2) == "a\n\n\nb"
    assert norm("  a  \n  b", strip_lines=False, collapse_spaces=False) == "a  \n  b"


def test_real_documents_keep_their_chinese_punctuation_and_are_stable() -> None:
    op = Normalize()
    for path in sorted((DATA / "industry" / "docs" / "zh").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        out = op.normalize(text)
        for mark in "，。；：、（）":
            assert out.count(mark) == text.count(mark), (path.name, mark)
        assert op.normalize(out) == out, path.name  # idempotent
    for path in sorted((DATA / "industry" / "docs" / "en").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        out = op.normalize(text)
        assert "\u00ad" not in out and "\u202f" not in out  # soft hyphen, narrow no-break space
        assert out.split() == text.replace("\u00ad", "").split()  # same words, tidier spaces
        assert op.normalize(out) == out, path.name


def test_process_rewrites_a_copy_and_records_meta() -> None:
    item = Item("doc#1", "ＡＢＣ  def\n\n\n\nghi", {"source": "a.txt", "tags": ["x"]})
    before = copy.deepcopy(item)
    result = Normalize().process(item)
    assert isinstance(result, Item)
    assert result.text == "ABC def\n\nghi"
    assert result.meta["normalize"] == {"chars_in": 15, "chars_out": 12}
    assert result.meta["source"] == "a.txt"
    assert item == before


def test_text_that_becomes_empty_is_rejected() -> None:
    result = Normalize().process(Item("d", " \u200b\n\t\ufeff "))
    assert isinstance(result, Rejection)
    assert result.reason == "empty: no text left after normalization (was 6 chars)"
    assert result.operator == "normalize"


def test_survives_pickle_and_leaves_input_unchanged() -> None:
    op = Normalize(Normalize.Params(max_blank_lines=0, cjk_punctuation="，"))
    clone = pickle.loads(pickle.dumps(op))
    item = Item("d", "Ａ，Ｂ！\n\n\nC", {"k": {"nested": 1}})
    before = copy.deepcopy(item)
    assert clone.process(item) == op.process(item)
    assert clone.process(item).text == "A，B!\nC"  # type: ignore[union-attr]
    assert item == before


def test_unknown_params_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="extra"):
        Normalize.Params.model_validate({"nfkc": True})
