"""AIGC labels on files: JSON, Markdown, DOCX and PDF, picked by suffix.

DOCX keeps the implicit label (the `AIGC` object as JSON) in the core property `comments`
(replacing what was there), PDF in the document-info entry `/AIGC` (other metadata kept). For
both, the signed content is the extracted text — DOCX paragraphs then table cells, PDF page
text — so editing the body fails verification. The explicit label (visible text) goes at the
end of Markdown and DOCX bodies; JSON and PDF get none.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from feilun.core.errors import BadInput
from feilun.core.files import write_atomically
from feilun.governance.labels import (
    LabelCheck,
    label_document,
    make_label,
    verify_document,
    verify_label,
)

EXPLICIT_LABEL = "本内容由人工智能生成 / AI-generated"
SUFFIXES = (".json", ".md", ".docx", ".pdf")
EXPLICIT_SUFFIXES = (".md", ".docx")
_PDF_KEY = "/AIGC"


def label_file(
    src: Path, key: bytes, producer: str, out: Path | None = None, explicit: str | None = None
) -> Path:
    """Embed a signed implicit label (and `explicit` visible text) into `src`; write atomically.

    Writes to `out` (default: `src` in place) through a temporary file, so a failure leaves
    every existing file as it was. Returns the path written.
    """
    suffix = check_suffix(src)
    data = src.read_bytes()
    if suffix in (".json", ".md"):
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


def verify_file(path: Path, key: bytes) -> LabelCheck:
    """Check the implicit label embedded in `path` against its content."""
    suffix = check_suffix(path)
    data = path.read_bytes()
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
    label = make_label(_docx_text(doc), key, producer)
    doc.core_properties.comments = json.dumps(label, ensure_ascii=False)
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
