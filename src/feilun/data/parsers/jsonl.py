"""JSON Lines files (and .json files holding one array of records): one text per record.

`ParseOptions.text_field` names the field; without it a field called text/content/body/… is
used, else the one with the most prose (see the csv parser); a record's `_id` or `id` is kept
in `Parsed.row_ids`. A line that is not JSON is a warning with its line number; a file where no
line is a record is BadInput.
"""

from __future__ import annotations

import json
from typing import Any

from feilun.core.errors import BadInput
from feilun.data.parsers.csv import choose_text_field, join_rows
from feilun.data.parsers.text import decode_nonempty
from feilun.data.parsing import Parsed, ParseOptions

MAX_LINE_WARNINGS = 20  # then one summary line
_FIX = 'write one JSON object per line (JSON Lines), such as {"text": "…"}'


class JsonlParser:
    """Reads .jsonl, .ndjson and record-array .json files in any common encoding."""

    def parse(self, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """The chosen field of every record, records joined by a blank line."""
        text, encoding, warnings = decode_nonempty(data, name)
        records, problems = _read_records(text)
        if not records:
            raise BadInput(f"{name} has no line that is a JSON object ({problems[0]})", _FIX)
        warnings += problems[:MAX_LINE_WARNINGS]
        if len(problems) > MAX_LINE_WARNINGS:
            warnings.append(f"… and {len(problems) - MAX_LINE_WARNINGS} more unreadable lines")
        fields = list(dict.fromkeys(key for record in records for key in record))
        field = choose_text_field(fields, records, options.text_field, name, "field")
        joined, row_starts, row_ids = join_rows(records, field, name, warnings)
        return Parsed(
            text=joined,
            media_type="application/jsonl",
            row_starts=row_starts,
            row_ids=row_ids,
            warnings=warnings,
            encoding=encoding,
        )


PARSER = JsonlParser()


def _read_records(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The records, and one problem per line that is not one (with its line number)."""
    whole = _whole_document(text)
    if whole is not None:
        return whole
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {number}: not valid JSON ({e.msg}, column {e.colno})")
            continue
        record = _as_record(value)
        if record is None:
            problems.append(f"line {number}: a JSON {_kind(value)}, not an object")
        else:
            records.append(record)
    return records, problems


def _whole_document(text: str) -> tuple[list[dict[str, Any]], list[str]] | None:
    """Records of a file that is one JSON value (an array, or one pretty-printed object)."""
    if not text.lstrip().startswith(("[", "{")):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None  # JSON Lines, or broken: read line by line
    items = value if isinstance(value, list) else [value]
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, item in enumerate(items, start=1):
        record = _as_record(item)
        if record is None:
            problems.append(f"item {number}: a JSON {_kind(item)}, not an object")
        else:
            records.append(record)
    return records, problems


def _as_record(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        return {"text": value}  # a bare string is its own text
    return None


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"
