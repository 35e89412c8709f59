"""run_pipeline on the local engine, and items_from_documents."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from feilun.core.errors import ConfigError, PluginError
from feilun.core.records import Document
from feilun.data.items import Item, Rejection
from feilun.data.pipeline import items_from_documents, reason_category, run_pipeline
from feilun.data.recipes import load_recipe, recipe_of

ZH_DOCS = Path("../shared/data/industry/docs/zh")


class MinChars:
    """Rejects items shorter than `n` characters."""

    name: ClassVar[str] = "min_chars"
    version: ClassVar[str] = "1"

    def __init__(self, n: int = 5, calls: list[str] | None = None) -> None:
        self.n, self.calls = n, calls

    def process(self, item: Item) -> Item | Rejection:
        if self.calls is not None:
            self.calls.append(f"min_chars:{item.id}")
        if len(item.text) < self.n:
            return Rejection(item, "whatever", f"too_short: {len(item.text)} chars < {self.n}")
        return item


class Strip:
    """Rewrites in place: strips the text and marks the item."""

    name: ClassVar[str] = "strip"
    version: ClassVar[str] = "3"

    def __init__(self, calls: list[str] | None = None) -> None:
        self.calls = calls

    def process(self, item: Item) -> Item:
        if self.calls is not None:
            self.calls.append(f"strip:{item.id}")
        item.text = item.text.strip()
        item.meta["stripped"] = True
        return item


class NoDigits:
    name: ClassVar[str] = "no_digits"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> Item | Rejection:
        if any(c.isdigit() for c in item.text):
            return Rejection(item, "no_digits", "has_digits")  # a reason without detail
        return item


class FirstOfText:
    """Keeps the first item of each text."""

    name: ClassVar[str] = "first_of_text"
    version: ClassVar[str] = "1"

    def key(self, item: Item) -> str:
        return item.text

    def select(self, keyed: Sequence[tuple[str, Any]]) -> dict[str, str]:
        first: dict[str, str] = {}
        return {i: f"duplicate: of {first[k]}" for i, k in keyed if first.setdefault(k, i) != i}


def make_items(*texts: str) -> list[Item]:
    return [Item(f"i{n}", text, {"n": n}) for n, text in enumerate(texts)]


def test_counts_reasons_and_order() -> None:
    items = make_items("  hello world ", "hi", "hello world", "x1", "spam 42", "hello world")
    result = run_pipeline(items, recipe_of([Strip(), MinChars(3), FirstOfText(), NoDigits()]))
    assert [i.id for i in result.kept] == ["i0"]
    assert result.kept[0].text == "hello world" and result.kept[0].meta["stripped"] is True
    # Rejections are grouped by step, in input order within a step.
    assert [(r.item.id, r.operator, r.reason) for r in result.rejected] == [
        ("i1", "min_chars", "too_short: 2 chars < 3"),
        ("i3", "min_chars", "too_short: 2 chars < 3"),
        ("i2", "first_of_text", "duplicate: of i0"),
        ("i5", "first_of_text", "duplicate: of i0"),
        ("i4", "no_digits", "has_digits"),
    ]
    summary = [
        (r.operator, r.version, r.count_in, r.count_out, r.removed_by_reason)
        for r in result.reports
    ]
    assert summary == [
        ("strip", "3", 6, 6, {}),
        ("min_chars", "1", 6, 4, {"too_short": 2}),
        ("first_of_text", "1", 4, 2, {"duplicate": 2}),
        ("no_digits", "1", 2, 1, {"has_digits": 1}),
    ]
    assert all(r.wall_s >= 0 for r in result.reports)


def test_the_callers_items_are_not_rewritten() -> None:
    items = make_items("  padded  ")
    result = run_pipeline(items, recipe_of([Strip()]))
    assert items[0].text == "  padded  " and "stripped" not in items[0].meta
    assert result.kept[0].text == "padded"


def test_row_operators_stream_item_by_item() -> None:
    calls: list[str] = []
    consumed: list[str] = []

    def source() -> Iterator[Item]:
        for item in make_items("first item", "second item"):
            consumed.append(item.id)
            yield item

    result = run_pipeline(source(), recipe_of([Strip(calls), MinChars(3, calls)]))
    assert len(result.kept) == 2
    # Each item passes every row operator before the next one is read.
    assert calls == ["strip:i0", "min_chars:i0", "strip:i1", "min_chars:i1"]
    assert consumed == ["i0", "i1"]


def test_progress_reaches_every_operators_count() -> None:
    seen: dict[int, tuple[str, int, int | None]] = {}

    def progress(step: int, operator: str, done: int, total: int | None) -> None:
        seen[step] = (operator, done, total)

    run_pipeline(
        make_items("aaaa", "b", "aaaa", "cccc"),
        recipe_of([MinChars(2), FirstOfText(), Strip()]),
        progress=progress,
    )
    assert seen == {0: ("min_chars", 4, 4), 1: ("first_of_text", 3, 3), 2: ("strip", 2, 2)}


def test_empty_input() -> None:
    result = run_pipeline([], recipe_of([Strip(), FirstOfText()]))
    assert result.kept == [] and result.rejected == []
    assert [(r.count_in, r.count_out) for r in result.reports] == [(0, 0), (0, 0)]


def test_repeated_item_id_is_an_error() -> None:
    items = [Item("same", "a"), Item("same", "b")]
    with pytest.raises(ConfigError, match="'same' appears twice"):
        run_pipeline(items, recipe_of([Strip()]))


def test_unknown_engine_lists_the_registered_ones() -> None:
    with pytest.raises(PluginError, match="registered: local, ray"):
        run_pipeline(make_items("a"), recipe_of([Strip()]), engine="spark")


class ReturnsNone:
    name: ClassVar[str] = "returns_none"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> None:
        return None


class ChangesId:
    name: ClassVar[str] = "changes_id"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> Item:
        return Item(item.id + "x", item.text)


class NoReason:
    name: ClassVar[str] = "no_reason"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> Rejection:
        return Rejection(item, "no_reason", " ")


class RemovesStrangers(FirstOfText):
    name: ClassVar[str] = "removes_strangers"

    def select(self, keyed: Sequence[tuple[str, Any]]) -> dict[str, str]:
        return {"ghost": "duplicate: of nothing"}


class Crashes:
    name: ClassVar[str] = "crashes"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> Item:
        raise ZeroDivisionError("boom")


@pytest.mark.parametrize(
    ("operator", "expected"),
    [
        (ReturnsNone(), "returned NoneType for item 'i0'"),
        (ChangesId(), "changed item id 'i0' to 'i0x'"),
        (NoReason(), "removed item 'i0' without a reason"),
        (RemovesStrangers(), r"removed ids it was not given: \['ghost'\]"),
    ],
)
def test_misbehaving_operators_are_named(operator: Any, expected: str) -> None:
    with pytest.raises(PluginError, match=expected) as caught:
        run_pipeline(make_items("some text"), recipe_of([operator]))
    assert type(operator).name in caught.value.message


def test_an_operator_bug_keeps_its_traceback_and_says_where() -> None:
    with pytest.raises(ZeroDivisionError) as caught:
        run_pipeline(make_items("some text"), recipe_of([Crashes()]))
    assert "raised by operator 'crashes' on item 'i0'" in caught.value.__notes__


def test_reason_category() -> None:
    assert reason_category("too_short: 12 chars < 50") == "too_short"
    assert reason_category("has_digits") == "has_digits"
    assert reason_category(": odd") == "unspecified"


def test_items_from_documents() -> None:
    path = sorted(ZH_DOCS.glob("*.md"))[0]
    text = path.read_text(encoding="utf-8")
    doc = Document(
        name=path.name,
        collection="laws",
        source=str(path),
        source_id=f"zh/{path.name}",
        media_type="text/markdown",
        language="zh",
        title=path.stem,
        text=text,
    )
    (item,) = items_from_documents([doc])
    assert item.id == doc.id and item.text == text
    assert item.meta == {
        "document_id": doc.id,
        "source_id": f"zh/{path.name}",
        "collection": "laws",
        "source": str(path),
        "title": path.stem,
        "language": "zh",
        "media_type": "text/markdown",
    }


def test_a_tabular_document_gives_one_item_per_row() -> None:
    text = "ticket one: gas smell\r\nticket two: meter broken\nlast row, no newline"
    starts = [0, text.index("ticket two"), text.index("last row")]
    doc = Document(name="t.csv", collection="tickets", text=text, meta={"row_starts": starts})
    items = items_from_documents([doc])
    assert [i.id for i in items] == [f"{doc.id}#1", f"{doc.id}#2", f"{doc.id}#3"]
    assert [i.text for i in items] == [
        "ticket one: gas smell",
        "ticket two: meter broken",
        "last row, no newline",
    ]
    assert [i.meta["row"] for i in items] == [1, 2, 3]
    assert all(i.meta["document_id"] == doc.id for i in items)
    assert [i.meta["source_id"] for i in items] == ["", "", ""]  # no path, no ids: none
    own = doc.model_copy(update={"source_id": "t.csv", "meta": {**doc.meta, "row_ids": ["a", ""]}})
    assert [i.meta["source_id"] for i in items_from_documents([own])] == ["a", "t.csv#2", "t.csv#3"]


def paragraphs(limit_files: int = 3) -> list[Item]:
    """Paragraphs of real Chinese regulations (long enough to mean something)."""
    items = []
    for path in sorted(ZH_DOCS.glob("*.md"))[:limit_files]:
        for n, para in enumerate(path.read_text(encoding="utf-8").split("\n\n")):
            if len(para) >= 40:
                items.append(Item(f"{path.stem}#{n}", para.strip(), {"source": path.name}))
    return items


def test_real_dedup_operators_remove_planted_copies(tmp_path: Path) -> None:
    items = paragraphs()
    original, other = items[5], items[9]
    exact = Item("planted-exact", original.text, {})
    near = Item("planted-near", other.text[:-2] + "。。", {})  # two characters differ
    recipe_path = tmp_path / "dedup.yaml"
    recipe_path.write_text(
        "description: dedup\noperators:\n  - op: exact_dedup\n  - op: near_dedup\n",
        encoding="utf-8",
    )
    result = run_pipeline([*items, exact, near], load_recipe(recipe_path))
    removed = {r.item.id: (r.operator, r.reason) for r in result.rejected}
    assert removed["planted-exact"] == ("exact_dedup", f"exact_duplicate: of {original.id}")
    assert removed["planted-near"][0] == "near_dedup"
    assert other.id in removed["planted-near"][1]
    kept_ids = [i.id for i in result.kept]
    assert kept_ids == [i.id for i in items if i.id not in removed]
