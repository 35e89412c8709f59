"""AIGC labels on files: JSON, Markdown, DOCX and PDF, picked by suffix.

DOCX keeps the implicit label (the `AIGC` object as JSON) in the core property `comments`
(replacing what was there), PDF in the document-info entry `/AIGC` (other metadata kept). For
both, the signed content is the extracted text — DOCX paragraphs then table cells, PDF page
text — so editing the body fails verification. The explicit label (visible text) goes at the
end of Markdown and DOCX bodies; JSON and PDF get none.

Row files (JSONL, Parquet: dataset exports) carry one label per generated row, under `AIGC`
(a JSON object per JSONL line; a JSON string column in Parquet), signing the row without it:
rows are split, sampled and merged into other datasets, and a label must travel with each;
a model-written row (`is_generated_row`) without one fails verification. They get no
visible label: it would end up in training text and teach a model to emit it.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from feilun.core.errors import BadInput
from feilun.core.files import write_atomically
from feilun.governance.labels import (
    LabelCheck,
    label_document,
    make_label,
    signed_text,
    verify_document,
    verify_label,
)

EXPLICIT_LABEL = "本内容由人工智能生成 / AI-generated"
SUFFIXES = (".json", ".md", ".docx", ".pdf", ".jsonl", ".parquet")
ROW_SUFFIXES = (".jsonl", ".parquet")
EXPLICIT_SUFFIXES = (".md", ".docx")
_PDF_KEY = "/AIGC"
DOCX_PROPERTY_CHARS = 255


def label_file(
    src: Path,
    key: bytes,
    producer: str,
    out: Path | None = None,
    explicit: str | None = None,
    is_generated: Callable[[dict[str, Any]], bool] | None = None,
) -> Path:
    """Embed a signed implicit label (and `explicit` visible text) into `src`; write atomically.

    Row files get a label on each row `is_generated` accepts (default: every row). Writes to
    `out` (default: `src` in place) through a temporary file, so a failure leaves every
    existing file as it was. Returns the path written.
    """
    suffix = check_suffix(src)
    data = src.read_bytes()
    if suffix in ROW_SUFFIXES:
        labelled, _ = _label_rows(data, suffix, key, producer, is_generated or (lambda _: True))
    elif suffix in (".json", ".md"):
        text = data.decode("utf-8")
        if explicit and suffix == ".md":
            text = _with_explicit_line(text, explicit)
        labelled = label_document(text, suffix, key, producer).encode("utf-8")
    elif suffix == ".docx":
        labelled = _label_docx(data, key, producer, explicit)
    else:
        labelled = _label_pdf(data, key, producer)
    target = out or src
    write_atomically(target, labelled)
    return target


def label_rows_file(
    path: Path, key: bytes, producer: str, is_generated: Callable[[dict[str, Any]], bool]
) -> int:
    """Label the rows `is_generated` accepts in a JSONL or Parquet file, in place; how many."""
    suffix = check_suffix(path)
    if suffix not in ROW_SUFFIXES:
        raise BadInput(f"{path.name} is not a row file", f"give one of {', '.join(ROW_SUFFIXES)}")
    labelled, count = _label_rows(path.read_bytes(), suffix, key, producer, is_generated)
    write_atomically(path, labelled)
    return count


def verify_file(path: Path, key: bytes) -> LabelCheck:
    """Check the implicit label embedded in `path` against its content."""
    suffix = check_suffix(path)
    data = path.read_bytes()
    if suffix in ROW_SUFFIXES:
        return _verify_rows(_read_rows(data, suffix), key)
    if suffix in (".json", ".md"):
        return verify_document(data.decode("utf-8"), suffix, key)
    if suffix == ".docx":
        doc = _open_docx(data)
        comments = doc.core_properties.comments  # unlabelled files may hold any text there
        return _check(_docx_text(doc), comments if comments.startswith("{") else "", key)
    reader = _open_pdf(data)
    raw = (reader.metadata or {}).get(_PDF_KEY)
    return _check(_pdf_text(reader), str(raw) if raw is not None else "", key)


def check_suffix(path: Path) -> str:
    """`path`'s lower-case suffix; BadInput listing the supported ones if it is not."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BadInput(
            f"cannot label {suffix or 'suffix-less'!r} files ({path.name})",
            f"supported: {', '.join(SUFFIXES)}",
        )
    return suffix


def _check(content: str, raw: str | None, key: bytes) -> LabelCheck:
    try:
        label = json.loads(raw) if raw else None
    except ValueError:
        return LabelCheck(False, "the embedded AIGC label is not valid JSON")
    return verify_label(content, label, key)


def _with_explicit_line(text: str, explicit: str) -> str:
    body = text.rstrip("\n")
    if body.endswith(explicit):
        return text
    return f"{body}\n\n{explicit}\n"


def _open_docx(data: bytes) -> Any:
    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        return docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, ValueError, KeyError, OSError) as e:
        raise BadInput(f"not a readable DOCX file: {e}", "give a .docx saved by Word") from e


def _docx_text(doc: Any) -> str:
    lines = [p.text for p in doc.paragraphs]
    for table in doc.tables:
        lines += ["\t".join(cell.text for cell in row.cells) for row in table.rows]
    return "\n".join(lines)


def _label_docx(data: bytes, key: bytes, producer: str, explicit: str | None) -> bytes:
    doc = _open_docx(data)
    if explicit and (not doc.paragraphs or doc.paragraphs[-1].text != explicit):
        doc.add_paragraph(explicit)
    label = json.dumps(make_label(_docx_text(doc), key, producer), ensure_ascii=False)
    if len(label) > DOCX_PROPERTY_CHARS:
        raise BadInput(
            f"the AIGC label is {len(label)} characters, over DOCX's {DOCX_PROPERTY_CHARS} for "
            f"a core property (ContentProducer {producer!r} is too long)",
            "use a shorter producer name or filing code",
        )
    doc.core_properties.comments = label
    buffer = io.BytesIO()
    doc.save(buffer)
    return buffer.getvalue()


def _open_pdf(data: bytes) -> Any:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise BadInput("the PDF is encrypted", "label an unencrypted PDF")
        _ = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, OSError) as e:
        raise BadInput(f"not a readable PDF file: {e}", "give a valid .pdf") from e
    return reader


def _pdf_text(reader: Any) -> str:
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def _label_pdf(data: bytes, key: bytes, producer: str) -> bytes:
    from pypdf import PdfWriter

    reader = _open_pdf(data)
    label = make_label(_pdf_text(reader), key, producer)
    writer = PdfWriter(clone_from=reader)  # keeps the document info; we add one entry
    writer.add_metadata({_PDF_KEY: json.dumps(label, ensure_ascii=False)})
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def is_generated_row(row: dict[str, Any]) -> bool:
    """Whether a dataset row holds model-written text.

    Synthetic QA names its model in `meta.model` (rule-written pairs have none); curated
    feedback rows name the serving `meta.models`: an upvoted answer is the model's, and a
    preference row's `rejected` is too, while a correction alone is a person's. `meta` may be
    JSON text (as Parquet exports write it when its values differ in type across rows).
    """
    meta = row.get("meta")
    if isinstance(meta, str):  # a Parquet export of mixed-type meta keeps it as JSON text
        try:
            meta = json.loads(meta)
        except ValueError:
            return False
    if not isinstance(meta, dict):
        return False
    if meta.get("model"):
        return True
    return bool(meta.get("models")) and (meta.get("kind") == "upvote" or "rejected" in row)


def _read_rows(data: bytes, suffix: str) -> list[dict[str, Any]]:
    if suffix == ".parquet":
        return list(_read_parquet(data).to_pylist())
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise BadInput(f"line {number} is not valid JSON: {e}", "give a JSONL file") from e
        if not isinstance(row, dict):
            raise BadInput(f"line {number} is not a JSON object", "one object per line")
        rows.append(row)
    return rows


def _read_parquet(data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise BadInput(f"not a readable Parquet file: {e}", "give a valid .parquet") from e


def _row_label(row: dict[str, Any]) -> Any:
    raw = row.get("AIGC")
    if isinstance(raw, str):  # Parquet keeps the label as JSON text
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _label_rows(
    data: bytes,
    suffix: str,
    key: bytes,
    producer: str,
    is_generated: Callable[[dict[str, Any]], bool],
) -> tuple[bytes, int]:
    """Label the generated rows: the file's bytes and how many rows carry a label.

    Rows without a label keep their bytes (and content hash).
    """
    table = _read_parquet(data) if suffix == ".parquet" else None  # read once
    rows = _read_rows(data, suffix) if table is None else table.to_pylist()
    labels = [
        make_label(signed_text(row), key, producer, _row_id(row)) if is_generated(row) else None
        for row in rows
    ]
    count = sum(label is not None for label in labels)
    if table is None:
        lines = [line for line in data.decode("utf-8").splitlines() if line.strip()]
        return "".join(
            f"{_labelled_line(line, row, label)}\n"
            for line, row, label in zip(lines, rows, labels, strict=True)
        ).encode("utf-8"), count
    import pyarrow as pa
    import pyarrow.parquet as pq

    if "AIGC" not in table.column_names and not count:
        return data, count
    if "AIGC" in table.column_names:
        table = table.drop_columns(["AIGC"])
    texts = [json.dumps(label, ensure_ascii=False) if label else None for label in labels]
    buffer = io.BytesIO()
    pq.write_table(table.append_column("AIGC", pa.array(texts, pa.string())), buffer)
    return buffer.getvalue(), count


def _labelled_line(line: str, row: dict[str, Any], label: dict[str, str] | None) -> str:
    """The JSONL line of `row` with `label` under `AIGC` (as it was when nothing changes)."""
    if label is None and "AIGC" not in row:
        return line
    unlabelled = {k: v for k, v in row.items() if k != "AIGC"}
    return json.dumps(unlabelled | _aigc(label), ensure_ascii=False, separators=(",", ":"))


def _aigc(label: dict[str, str] | None) -> dict[str, Any]:
    return {"AIGC": label} if label else {}


def _row_id(row: dict[str, Any]) -> str | None:
    row_id = row.get("id")
    return str(row_id) if row_id not in (None, "") else None


def _verify_rows(rows: list[dict[str, Any]], key: bytes) -> LabelCheck:
    """Every labelled row must verify and every model-written row carry a label.

    A file without any labelled row has no label.
    """
    checked = 0
    for number, row in enumerate(rows, start=1):
        where = f"row {number}" + (f" (id {row['id']})" if _row_id(row) else "")
        label = _row_label(row)
        if label is None:
            if is_generated_row(row):
                return LabelCheck(False, f"{where} is model-written but carries no AIGC label")
            continue
        check = verify_label(signed_text(row), label, key)
        if not check.is_valid:
            return LabelCheck(False, f"{where}: {check.problem}", check.label, check.changed)
        checked += 1
    if not checked:
        return LabelCheck(False, "no AIGC label (no row carries one)")
    return LabelCheck(True, "", {"rows_labelled": str(checked), "rows": str(len(rows))})
