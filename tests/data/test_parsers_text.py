"""The text, markdown, csv and jsonl parsers on the shared regulations and manifests, and on
tables written here with the csv and json modules in legacy encodings and odd dialects."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from feilun.core.errors import BadInput
from feilun.data.parsing import Parsed, ParseOptions, parser_for

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
INDUSTRY = SHARED / "industry" / "docs"
DOCUMENTS = SHARED / "documents"
ARTICLE = re.compile(r"^第[一二三四五六七八九十百零]+条")


def parse(kind: str, data: bytes, name: str = "file", **options: Any) -> Parsed:
    return parser_for(kind).parse(data, name, ParseOptions(**options))


def industry_manifest() -> list[dict[str, Any]]:
    lines = (INDUSTRY / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def articles(path: Path) -> list[str]:
    return [ln for ln in path.read_text(encoding="utf-8").split("\n") if ARTICLE.match(ln)]


def rows_of(parsed: Parsed) -> list[str]:
    """The rows back out of the joined text, cut at `row_starts`."""
    ends = [start - 2 for start in parsed.row_starts[1:]] + [len(parsed.text)]
    return [parsed.text[s:e] for s, e in zip(parsed.row_starts, ends, strict=True)]


# --- text and markdown --------------------------------------------------------------------


# The English files' manifest titles are editorial ("29 U.S.C. Chapter 15 - …"), not a heading.
@pytest.mark.parametrize(
    "record", [r for r in industry_manifest() if r["lang"] == "zh"], ids=lambda r: r["file"]
)
def test_markdown_title_matches_the_manifest(record: dict[str, Any]) -> None:
    data = (INDUSTRY / record["file"]).read_bytes()
    parsed = parse("markdown", data, record["file"])
    assert parsed.title == record["title"]
    assert parsed.text == data.decode("utf-8") and parsed.media_type == "text/markdown"


def test_markdown_of_the_shared_chinese_regulation() -> None:
    manifest = [json.loads(ln) for ln in (DOCUMENTS / "manifest.jsonl").read_text().splitlines()]
    expected = next(r["title"] for r in manifest if r["file"].endswith(".md"))
    data = (DOCUMENTS / "zh" / "shanghai-smoking-control-regulation.md").read_bytes()
    assert parse("markdown", data.decode("utf-8").encode("gb18030")).title == expected


def test_markdown_title_from_front_matter_setext_and_not_from_code() -> None:
    front = "---\ntitle: '燃气安全手册'\nauthor: x\n---\n# 第一章\n"
    assert parse("markdown", front.encode()).title == "燃气安全手册"
    code = "```bash\n# not a heading\n```\n\n燃气管理规定\n======\n\n## 第一节\n"
    assert parse("markdown", code.encode()).title == "燃气管理规定"
    link = "## [城镇燃气管理条例](https://example.org/law) **2016**\n"
    assert parse("markdown", link.encode()).title == "城镇燃气管理条例 2016"
    plain = "<!-- exported -->\n\n没有标题的说明\n正文\n"
    assert parse("markdown", plain.encode()).title == "没有标题的说明"


@pytest.mark.parametrize("encoding", ["gbk", "utf-16", "utf-16-le", "big5"])
def test_text_in_legacy_encodings(encoding: str) -> None:
    if encoding == "big5":
        text = "職業安全衛生法\r\n第一條 為防止職業災害，保障工作者安全及健康，特制定本法。\r\n"
    else:
        md = (INDUSTRY / "zh" / "城镇燃气管理条例(2016-02-06).md").read_text(encoding="utf-8")
        text = "\n".join(line.lstrip("# ") for line in md.split("\n"))
    parsed = parse("text", text.encode(encoding), "notice.txt")
    assert parsed.text == text.replace("\r\n", "\n")
    assert parsed.title == text.split("\r\n")[0].split("\n")[0]
    assert parsed.media_type == "text/plain"
    expected = {"gbk": "gb18030", "big5": "cp950", "utf-16": "utf-16-le"}.get(encoding, encoding)
    assert parsed.encoding.replace("_", "-") == expected


def test_text_title_is_empty_when_the_first_line_is_a_paragraph() -> None:
    line = articles(INDUSTRY / "zh" / "消防法(2021-04-29).md")[0] * 3
    assert len(line) > 100 and parse("text", line.encode()).title == ""


@pytest.mark.parametrize("kind", ["text", "markdown", "csv", "jsonl"])
def test_empty_and_blank_files_are_bad_input(kind: str) -> None:
    for data in (b"", b" \n\t\r\n", "\n".encode("utf-16")):
        with pytest.raises(BadInput, match=r"blank\.x is empty"):
            parse(kind, data, "blank.x")


def test_binary_named_txt_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"dump\.txt is not text in any common encoding"):
        parse("text", b"\x00\x01\x02" * 100, "dump.txt")
    with pytest.raises(BadInput, match=r"zeros\.txt contains NUL bytes"):
        parse("text", bytes(300), "zeros.txt")


# --- csv ----------------------------------------------------------------------------------


def csv_bytes(rows: list[list[str]], encoding: str = "utf-8", **dialect: Any) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, **dialect).writerows(rows)
    return buffer.getvalue().encode(encoding)


@pytest.fixture(scope="module")
def tickets() -> list[list[str]]:
    """A ticket dump: id, short title, the text (articles of a real regulation)."""
    found = articles(INDUSTRY / "zh" / "城镇燃气管理条例(2016-02-06).md")
    return [["编号", "标题", "内容"]] + [[str(i), a[:6], a] for i, a in enumerate(found, 1)]


@pytest.mark.parametrize(
    ("encoding", "dialect"),
    [
        ("utf-8", {}),
        ("gbk", {}),
        ("utf-8-sig", {"delimiter": ";"}),
        ("gb18030", {"delimiter": "\t"}),
        ("utf-16", {"delimiter": "|", "quoting": csv.QUOTE_ALL}),
    ],
)
def test_csv_rows_in_any_encoding_and_dialect(
    tickets: list[list[str]], encoding: str, dialect: dict[str, Any]
) -> None:
    parsed = parse("csv", csv_bytes(tickets, encoding, **dialect), "tickets.csv")
    assert len(tickets) - 1 == 55  # the regulation's articles, as its manifest counts them
    assert rows_of(parsed) == [row[2] for row in tickets[1:]]  # "内容" is a usual text column
    assert parsed.text == "\n\n".join(row[2] for row in tickets[1:])
    assert parsed.media_type == "text/csv" and parsed.warnings == []


def test_csv_text_field_option(tickets: list[list[str]]) -> None:
    parsed = parse("csv", csv_bytes(tickets), text_field="标题")
    assert rows_of(parsed) == [row[1] for row in tickets[1:]]


def test_csv_unknown_text_field_lists_the_columns(tickets: list[list[str]]) -> None:
    with pytest.raises(BadInput) as caught:
        parse("csv", csv_bytes(tickets), "tickets.csv", text_field="正文")
    assert (
        caught.value.message
        == "tickets.csv has no column '正文'; its columns are: '编号', '标题', '内容'"
    )
    assert "text field" in (caught.value.fix or "")


def test_csv_without_a_usual_name_takes_the_prose_column(tickets: list[list[str]]) -> None:
    renamed = [["id", "subject", "详情"], *tickets[1:]]
    assert rows_of(parse("csv", csv_bytes(renamed))) == [row[2] for row in tickets[1:]]


def test_csv_huge_fields_and_multiline_cells() -> None:
    law = (INDUSTRY / "zh" / "安全生产法(2021-06-10).md").read_text(encoding="utf-8")
    huge = law * 8  # far past csv's default field limit of 131072 characters
    assert len(huge) > 131072
    parsed = parse("csv", csv_bytes([["title", "body"], ["安全生产法", huge], ["短", "一\n二"]]))
    assert rows_of(parsed) == [huge, "一\n二"]


def test_csv_warns_about_empty_and_ragged_rows(tickets: list[list[str]]) -> None:
    rows = [*tickets[:4], ["99", "空", ""], ["100", "缺"], tickets[4]]
    parsed = parse("csv", csv_bytes(rows))
    assert rows_of(parsed) == [row[2] for row in tickets[1:5]]
    assert parsed.warnings == [
        "1 rows have a different number of cells than the header",
        "2 rows with an empty '内容' were left out",
    ]


def test_csv_with_only_a_header_is_bad_input() -> None:
    with pytest.raises(BadInput, match="header row but no data rows"):
        parse("csv", b"id,text\n", "h.csv")


# --- jsonl --------------------------------------------------------------------------------


def test_jsonl_shared_probes_pick_the_prose_field() -> None:
    data = (DOCUMENTS / "zh_extraction_probes.jsonl").read_bytes()
    records = [json.loads(line) for line in data.decode().splitlines()]
    parsed = parse("jsonl", data, "probes.jsonl")
    assert rows_of(parsed) == [r["expected_substring"] for r in records]
    assert parsed.media_type == "application/jsonl" and parsed.warnings == []


def test_jsonl_text_field_option_and_unknown_field() -> None:
    data = (DOCUMENTS / "manifest.jsonl").read_bytes()
    notes = [json.loads(line)["note"] for line in data.decode().splitlines()]
    assert rows_of(parse("jsonl", data, text_field="note")) == notes
    with pytest.raises(BadInput) as caught:
        parse("jsonl", data, "manifest.jsonl", text_field="body")
    assert caught.value.message.startswith("manifest.jsonl has no field 'body'; its fields are: ")
    assert "'note'" in caught.value.message and "'sha256'" in caught.value.message


def test_jsonl_in_gbk_with_malformed_lines() -> None:
    found = articles(INDUSTRY / "zh" / "消防法(2021-04-29).md")[:5]
    lines = [json.dumps({"id": i, "content": a}, ensure_ascii=False) for i, a in enumerate(found)]
    lines[1] = lines[1][:-5]  # cut short
    lines.insert(3, "[1, 2]")
    lines.insert(4, "")
    parsed = parse("jsonl", "\n".join(lines).encode("gbk"), "fire.jsonl")
    assert rows_of(parsed) == [found[0], found[2], found[3], found[4]]
    assert parsed.warnings == [
        "line 2: not valid JSON (Unterminated string starting at, column 22)",
        "line 4: a JSON array, not an object",
    ]


def test_jsonl_rows_keep_their_own_ids() -> None:
    # BEIR corpora name each record `_id`, other exports `id`; an `_id` is preferred.
    corpus = (SHARED / "cmrc2018-retrieval" / "corpus.jsonl").read_bytes()
    records = [json.loads(line) for line in corpus.decode().splitlines()]
    parsed = parse("jsonl", corpus, "corpus.jsonl")
    assert parsed.row_ids == [r["_id"] for r in records] and len(set(parsed.row_ids)) > 100
    assert rows_of(parsed) == [r["text"] for r in records]
    prompts = (SHARED / "xstest" / "prompts.jsonl").read_bytes()
    ids = [json.loads(line)["id"] for line in prompts.decode().splitlines()]
    assert parse("jsonl", prompts, "prompts.jsonl").row_ids == ids
    both = b'{"_id": "a1", "id": 7, "text": "x"}\n{"id": 8, "text": "y"}'
    assert parse("jsonl", both).row_ids == ["a1", "8"]  # `_id`, else `id`


def test_jsonl_ids_stay_aligned_with_the_rows_kept() -> None:
    found = articles(INDUSTRY / "zh" / "消防法(2021-04-29).md")[:3]
    records = [
        {"id": 10, "text": found[0]},
        {"id": 11, "text": "  "},  # no text: left out, its id too
        {"text": found[1]},  # no id: ""
        {"id": "x-12", "text": found[2]},
    ]
    data = "\n".join(json.dumps(r, ensure_ascii=False) for r in records).encode()
    parsed = parse("jsonl", data)
    assert rows_of(parsed) == found and parsed.row_ids == ["10", "", "x-12"]
    assert parse("jsonl", data, text_field="id").row_ids == []  # the id is the text: no ids
    assert parse("jsonl", (DOCUMENTS / "manifest.jsonl").read_bytes()).row_ids == []


def test_csv_rows_keep_their_id_column() -> None:
    table = "id,category,body\n1,billing,charged twice\n2,login,cannot sign in\n3,misc,\n"
    parsed = parse("csv", table.encode())
    assert parsed.row_ids == ["1", "2"] and rows_of(parsed) == ["charged twice", "cannot sign in"]
    cmmlu = (SHARED / "cmmlu" / "original" / "dev" / "marketing.csv").read_bytes()
    assert parse("csv", cmmlu, text_field="Question").row_ids == []  # no id column


def test_jsonl_where_no_line_parses_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"bad\.jsonl has no line that is a JSON object \(line 1: "):
        parse("jsonl", b"{oops\nnot json either\n", "bad.jsonl")


def test_jsonl_warnings_are_capped() -> None:
    data = "\n".join(['{"text": "ok"}'] + ["{broken"] * 30).encode()
    warnings = parse("jsonl", data).warnings
    assert len(warnings) == 21 and warnings[-1] == "… and 10 more unreadable lines"


def test_json_array_file_and_bare_strings() -> None:
    found = articles(INDUSTRY / "zh" / "消防法(2021-04-29).md")[:3]
    records = [{"q": "问", "answer": a} for a in found]
    pretty = json.dumps(records, ensure_ascii=False, indent=2).encode()
    assert rows_of(parse("jsonl", pretty, "qa.json")) == found
    bare = "\n".join(json.dumps(a, ensure_ascii=False) for a in found).encode()
    assert rows_of(parse("jsonl", bare)) == found
