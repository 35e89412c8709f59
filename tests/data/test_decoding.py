"""decode_text on real Chinese regulation text encoded here in legacy encodings, and on bytes
that are not text. The reference is the codec that encoded the text: decoding must give it back."""

from __future__ import annotations

import codecs
import random
from pathlib import Path

import pytest

from feilun.core.errors import BadInput
from feilun.data.decoding import decode_text, detect_encoding

ZH_DOCS = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "industry" / "docs" / "zh"
)
# Article 1-3 of Taiwan's Occupational Safety and Health Act (職業安全衛生法): Big5 cannot encode
# the simplified characters of the shared regulations, so traditional text is given here.
TRADITIONAL = (
    "職業安全衛生法\n"
    "第一條 為防止職業災害，保障工作者安全及健康，特制定本法；其他法律有特別規定者，從其規定。\n"
    "第二條 本法用詞，定義如下：一、工作者：指勞工、自營作業者及其他受工作場所負責人指揮或監督"
    "從事勞動之人員。二、勞工：指受僱從事工作獲致工資者。三、雇主：指事業主或事業之經營負責人"
    "或其代表事業主處理有關勞工事務之人。\n"
    "第三條 本法所稱主管機關：在中央為勞動部；在直轄市為直轄市政府；在縣（市）為縣（市）政府。\n"
)
LEGACY_ZH = ("gbk", "gb18030", "utf-16-le", "utf-16-be")


def regulation(stem: str) -> str:
    return next(ZH_DOCS.glob(f"{stem}*.md")).read_text(encoding="utf-8")


def regulation_lines(*stems: str) -> list[str]:
    """Every non-blank line of the named regulations: short headings and one-line articles."""
    return [line for s in stems for line in regulation(s).split("\n") if line.strip()]


@pytest.mark.parametrize("encoding", LEGACY_ZH)
@pytest.mark.parametrize("stem", ["城镇燃气管理条例", "安全生产许可证条例", "消防法"])
def test_whole_regulations_in_legacy_encodings_decode_exactly(stem: str, encoding: str) -> None:
    text = regulation(stem)
    decoded, used, warnings = decode_text(text.encode(encoding), f"{stem}.txt")
    assert decoded == text
    assert codecs.lookup(used) == codecs.lookup("gb18030" if encoding == "gbk" else encoding)
    assert warnings == []


@pytest.mark.parametrize("encoding", LEGACY_ZH)
def test_every_line_of_two_regulations_decodes_exactly_alone(encoding: str) -> None:
    # One line is where detectors fail: a heading of 6 characters, an article of one sentence.
    lines = regulation_lines("安全生产许可证条例", "生产安全事故应急条例")
    assert len(lines) > 100 and min(len(line) for line in lines) < 10
    wrong = [line for line in lines if decode_text(line.encode(encoding), "x.txt")[0] != line]
    assert wrong == []


@pytest.mark.parametrize("encoding", ["gbk", "gb18030"])
def test_two_line_excerpts_decode_exactly(encoding: str) -> None:
    lines = regulation_lines("石油天然气管道保护法")
    pairs = ["\n".join(lines[i : i + 2]) for i in range(0, len(lines) - 1, 7)]
    for pair in pairs:
        assert decode_text(pair.encode(encoding), "x.txt")[:2] == (pair, "gb18030")


@pytest.mark.parametrize("encoding", ["big5", "cp950"])
def test_traditional_chinese_in_big5_decodes_exactly(encoding: str) -> None:
    decoded, used, _ = decode_text(TRADITIONAL.encode(encoding), "tw.txt")
    assert decoded == TRADITIONAL
    assert used == "cp950"
    for line in TRADITIONAL.split("\n")[:3]:
        assert decode_text(line.encode(encoding), "tw.txt")[0] == line


def test_short_guess_is_reported_as_a_guess() -> None:
    decoded, used, warnings = decode_text("第一条 总则".encode("gbk"), "x.txt")
    assert (decoded, used) == ("第一条 总则", "gb18030")
    assert warnings == ["encoding guessed as gb18030 from only 11 bytes"]


@pytest.mark.parametrize(
    ("bom_encoding", "plain"),
    [("utf-8-sig", "utf-8"), ("utf-16", "utf-16-le"), ("utf-32", "utf-32-le")],
)
def test_byte_order_marks_win_and_are_dropped(bom_encoding: str, plain: str) -> None:
    text = regulation_lines("消防法")[3]
    data = text.encode(bom_encoding)
    assert data[:2] in (codecs.BOM_UTF8[:2], codecs.BOM_UTF16_LE)
    assert decode_text(data, "x.txt")[:2] == (text, plain)
    big_endian = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    assert decode_text(big_endian, "x.txt")[:2] == (text, "utf-16-be")


def test_newlines_become_lf() -> None:
    decoded = decode_text("一\r\n二\r三\n四".encode("gbk") * 20, "x.txt")[0]
    assert decoded == "一\n二\n三\n四" * 20


def test_western_text_in_cp1252() -> None:
    text = "Le présent règlement s'applique à la sécurité des installations de gaz — Élément clé."
    assert decode_text(text.encode("cp1252"), "fr.txt")[:2] == (text, "cp1252")


def test_utf8_with_a_few_broken_bytes_stays_utf8_with_a_warning() -> None:
    text = regulation("消防法")
    # A stray byte between two characters, and the file cut short inside its last character.
    broken = text[:100].encode("utf-8") + b"\xff" + text[100:].encode("utf-8") + "第".encode()[:2]
    decoded, used, warnings = decode_text(broken, "x.txt")
    assert used == "utf-8"
    assert decoded == text[:100] + "\ufffd" + text[100:] + "\ufffd"
    assert warnings == ["2 characters could not be decoded as utf-8 and became U+FFFD"]


def test_a_long_file_is_judged_where_its_non_ascii_text_starts() -> None:
    text = "id,level\n" + "1,ok\n" * 5000 + "\n".join(regulation_lines("消防法")[:40])
    assert decode_text(text.encode("gbk"), "log.csv")[:2] == (text, "gb18030")


def test_nul_bytes_are_binary() -> None:
    data = b"\x00" * 4096
    with pytest.raises(BadInput, match=r"blob\.txt contains NUL bytes") as caught:
        decode_text(data, "blob.txt")
    assert "UTF-8" in (caught.value.fix or "")


def test_random_bytes_are_not_text() -> None:
    data = bytes(b or 1 for b in random.Random(4).randbytes(20_000))  # no NUL: no shortcut
    with pytest.raises(BadInput, match=r"noise\.txt is not text in any common encoding"):
        decode_text(data, "noise.txt")


def test_utf16_without_bom_of_ascii_is_not_mistaken_for_binary() -> None:
    text = "Article 1. Gas operators shall report accidents.\n" * 3
    assert decode_text(text.encode("utf-16-le"), "x.txt")[:2] == (text, "utf-16-le")


def test_detect_encoding_picks_among_the_given_encodings() -> None:
    data = "安全生产法".encode("gbk")
    assert detect_encoding(data, ("utf-8", "gb18030", "cp437")) == "gb18030"
    assert detect_encoding(data, ("utf-8", "cp437")) == "cp437"


def test_empty_bytes_are_empty_text() -> None:
    assert decode_text(b"", "x.txt") == ("", "utf-8", [])
