"""CSV (and TSV) files: one text per row, taken from one column.

The first row is the header. `ParseOptions.text_field` names the column; without it a column
called text/content/body/… is used, else the one with the most prose (distinct values with
spaces or non-ASCII letters: not ids, paths, hashes or repeated categories). The rows'
texts are joined by a blank line and `Parsed.row_starts` says where each begins; a row's own id
(an `_id` or `id` column) is kept in `Parsed.row_ids`. The helpers for choosing the field and
joining rows serve the jsonl parser too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from feilun.core.errors import BadInput
from feilun.data.parsers.text import decode_nonempty
from feilun.data.parsing import Parsed, ParseOptions

logger = logging.getLogger(__name__)

ROW_SEPARATOR = "\n\n"
# Field names that hold the text, in order of preference (compared case-insensitively).
TEXT_FIELDS = (
    "text",
    "content",
    "body",
    "message",
    "description",
    "comment",
    "review",
    "summary",
    "answer",
    "question",
    "内容",
    "正文",
    "文本",
    "描述",
)
# Fields holding a record's own id, in order of preference (BEIR corpora use `_id`).
ID_FIELDS = ("_id", "id")
_MAX_FIELD_CHARS = 1 << 30  # csv's default (128 KiB) refuses long documents in one cell
_SNIFF_CHARS = 64 * 1024
_DELIMITERS = ",\t;|"


class CsvParser:
    """Reads .csv and .tsv files in any common encoding and dialect."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """The chosen column of every row, rows joined by a blank line."""
        text, encoding, warnings = decode_nonempty(data, name)
        rows = _read_rows(text, name)
        header = [cell.strip() for cell in rows[0]]
        body = rows[1:]
        if not body:
            raise BadInput(
                f"{name} has a header row but no data rows",
                "export the table again with its rows",
            )
        ragged = sum(len(row) != len(header) for row in body)
        if ragged:
            warnings.append(f"{ragged} rows have a different number of cells than the header")
        records = [dict(zip(header, row, strict=False)) for row in body]
        field = choose_text_field(header, records, options.text_field, name, "column")
        joined, row_starts, row_ids = join_rows(records, field, name, warnings)
        return Parsed(
            text=joined,
            media_type="text/csv",
            row_starts=row_starts,
            row_ids=row_ids,
            warnings=warnings,
            encoding=encoding,
        )


PARSER = CsvParser()


def choose_text_field(
    fields: Sequence[str],
    records: Sequence[Mapping[str, Any]],
    wanted: str | None,
    name: str,
    noun: str,
) -> str:
    """The field holding each record's text: `wanted`, a usual name, or the most prose."""
    by_folded = {f.casefold(): f for f in reversed(fields)}  # first of equal names wins
    if wanted is not None:
        found = wanted if wanted in fields else by_folded.get(wanted.casefold())
        if found is None:
            listed = ", ".join(repr(f) for f in fields) or "none"
            raise BadInput(
                f"{name} has no {noun} {wanted!r}; its {noun}s are: {listed}",
                f"choose one of those {noun}s as the text field",
            )
        return found
    for usual in TEXT_FIELDS:
        if usual in by_folded:
            return by_folded[usual]

    def prose(field: str) -> tuple[float, float]:
        """Characters of distinct prose values per record, then of any string value."""
        values = [v for r in records if isinstance(v := r.get(field), str)]
        distinct_prose = {v for v in values if not v.isascii() or " " in v.strip()}
        per_record = max(len(records), 1)
        return sum(map(len, distinct_prose)) / per_record, sum(map(len, values)) / per_record

    best = max(fields, key=prose, default=None)
    if best is None or prose(best)[1] == 0:
        raise BadInput(
            f"{name} has no {noun} with text in it", "check that the file holds text records"
        )
    logger.debug("%s: no text field named, using the longest %s %r", name, noun, best)
    return best


def join_rows(
    records: Sequence[Mapping[str, Any]], field: str, name: str, warnings: list[str]
) -> tuple[str, list[int], list[str]]:
    """Each record's `field` joined by a blank line, where each starts, and each one's own id.

    A record's id is its `_id`, else its `id` ("" if it has neither); there are no ids at all
    when no record has one. Records with no text are left out of all three.
    """
    texts = [_as_text(r.get(field)) for r in records]
    kept = [n for n, text in enumerate(texts) if text.strip()]
    if not kept:
        raise BadInput(
            f"{name} has no text in its {field!r} field in any row",
            "choose the field that holds the text",
        )
    if len(kept) < len(texts):
        warnings.append(f"{len(texts) - len(kept)} rows with an empty {field!r} were left out")
    row_starts, at = [], 0
    for n in kept:
        row_starts.append(at)
        at += len(texts[n]) + len(ROW_SEPARATOR)
    row_ids = [_own_id(records[n], field) for n in kept]
    return ROW_SEPARATOR.join(texts[n] for n in kept), row_starts, row_ids if any(row_ids) else []


def _own_id(record: Mapping[str, Any], text_field: str) -> str:
    for key in ID_FIELDS:
        value = record.get(key)
        if key != text_field and value is not None and value != "":
            return _as_text(value)
    return ""


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _read_rows(text: str, name: str) -> list[list[str]]:
    """The non-blank rows, read with the dialect sniffed from the start of the file."""
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD_CHARS))
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text, name))
    try:
        return [row for row in reader if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise BadInput(
            f"{name} is not valid CSV at line {reader.line_num}: {e}",
            "fix the quoting on that line, or export the table again",
        ) from e


def _dialect(text: str, name: str) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:_SNIFF_CHARS]
    if len(text) > _SNIFF_CHARS:
        sample = sample.rsplit("\n", 1)[0]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
    except csv.Error:
        default = csv.excel_tab if name.lower().endswith(".tsv") else csv.excel
        logger.debug("%s: dialect not recognised, reading it as %s", name, default.__name__)
        return default
