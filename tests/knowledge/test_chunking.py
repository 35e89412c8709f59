"""Chunking on real regulations: structure, spans, sizes, overlap, pages."""

from __future__ import annotations

import itertools
from pathlib import Path

import pydantic
import pytest

from feilun.core.records import Document
from feilun.knowledge.chunking import ChunkSettings, chunk_document, chunk_language, count_tokens

from .conftest import GAS, OSHA, SMOKING, document

REAL_FILES = [GAS, OSHA, SMOKING, *sorted(Path("../shared/data/industry/docs/zh").glob("*.md"))]


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_spans_sizes_and_order_on_real_files(path: Path) -> None:
    doc = document(path)
    settings = ChunkSettings(chunk_tokens=300, overlap_tokens=40)
    chunks = chunk_document(doc, settings)
    assert chunks
    for chunk in chunks:
        assert doc.text[chunk.start_char : chunk.end_char] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert count_tokens(chunk.text) <= settings.chunk_tokens
        assert chunk.document_id == doc.id and chunk.meta["title"] == doc.title
    starts = [c.start_char for c in chunks]
    assert starts == sorted(starts)
    # Nothing but whitespace and comments is left out between chunks.
    covered = sorted((c.start_char, c.end_char) for c in chunks)
    position = 0
    for start, end in covered:
        gap = doc.text[position:start]
        assert not gap.strip() or gap.strip().startswith("<!--"), gap[:80]
        position = max(position, end)


def test_chinese_articles_are_sections_with_their_chapter() -> None:
    chunks = chunk_document(document(GAS))
    by_article = {c.heading_path[-1]: c for c in chunks}
    twenty = by_article["第二十条"]
    assert twenty.heading_path == ["城镇燃气管理条例", "第三章 燃气经营与服务", "第二十条"]
    assert twenty.text.startswith("第二十条 管道燃气经营者因施工、检修等原因")
    assert "提前48小时" in twenty.text and "第二十一条" not in twenty.text
    # The chapter heading joins the first article of its chapter, not a chunk of its own.
    first = by_article["第一条"]
    assert first.text.startswith("## 第一章 总则\n\n第一条")
    assert all(c.meta["lang"] == "zh" for c in chunks)


def test_markdown_headings_make_the_path() -> None:
    chunks = chunk_document(document(OSHA))
    definitions = [c for c in chunks if c.heading_path[2:3] == ["§ 652. Definitions"]]
    assert definitions and definitions[0].heading_path[:2] == [
        "Title 29— LABOR",
        "CHAPTER 15— OCCUPATIONAL SAFETY AND HEALTH",
    ]
    assert all(c.meta["lang"] == "en" for c in chunks)


def test_long_article_is_cut_at_sentence_ends_with_overlap() -> None:
    sentences = [f"第{n}句说明燃气经营者应当履行的安全义务和检查要求。" for n in range(1, 41)]
    text = "第十二条 " + "".join(sentences)
    doc = Document(name="long.md", text=text)
    chunks = chunk_document(doc, ChunkSettings(chunk_tokens=100, overlap_tokens=30))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.heading_path == ["第十二条"]
        assert chunk.text.endswith("。")  # cut after a sentence, never inside one
    for before, after in itertools.pairwise(chunks):
        assert after.start_char < before.end_char  # whole sentences repeated
        overlap = doc.text[after.start_char : before.end_char]
        assert 0 < count_tokens(overlap) <= 30


def test_list_items_and_table_rows_are_units() -> None:
    rows = "\n".join(f"| 设备{n} | 压力容器 | 每年检验一次 |" for n in range(30))
    items = "\n".join(f"（{n}）第{n}项安全检查的要求和记录方式。" for n in range(1, 30))
    text = f"# 检查表\n\n{rows}\n\n## 要求\n\n{items}\n"
    doc = Document(name="t.md", text=text)
    chunks = chunk_document(doc, ChunkSettings(chunk_tokens=60, overlap_tokens=0))
    for chunk in chunks:
        lines = chunk.text.splitlines()
        assert all(line.startswith(("|", "（", "#")) or not line for line in lines), chunk.text
        if chunk.heading_path == ["检查表"] and not chunk.text.startswith("#"):
            assert chunk.text.startswith("| 设备") and chunk.text.endswith("|")


def test_pages_come_from_page_starts() -> None:
    pages = ["第一页的内容。" * 30, "第二页的内容。" * 30, "第三页。" * 30]
    text = "\n\n".join(pages)
    starts = [0, len(pages[0]) + 2, len(pages[0]) + len(pages[1]) + 4]
    doc = Document(name="p.pdf", text=text, pages=3, meta={"page_starts": starts})
    chunks = chunk_document(doc, ChunkSettings(chunk_tokens=100, overlap_tokens=0))
    assert chunks[0].page == 1 and chunks[-1].page == 3
    for chunk in chunks:
        assert starts[chunk.page - 1] <= chunk.start_char


def test_no_text_no_chunks_and_settings_are_validated() -> None:
    assert chunk_document(Document(name="empty", text=" \n\t ")) == []
    with pytest.raises(pydantic.ValidationError, match="overlap_tokens=400 must be < chunk_tokens"):
        ChunkSettings(chunk_tokens=400, overlap_tokens=400)


def test_chunk_ids_are_stable_and_languages_guessed() -> None:
    doc = document(SMOKING)
    assert [c.id for c in chunk_document(doc)] == [c.id for c in chunk_document(doc)]
    assert chunk_language("燃气管道 PE100 pipes") == "zh"
    assert chunk_language("The employer shall comply.") == "en"
    assert chunk_language("12 34", "zh") == "zh"
