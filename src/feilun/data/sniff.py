"""Which parser reads a file: its magic bytes first, then its extension.

The answer is a registered parser name or "zip". Content wins over the name: a .pdf that is
really an HTML error page is "html", a .txt that is really a PNG is refused. A type nothing
reads raises BadInput naming it and listing the types that are supported.
"""

from __future__ import annotations

import io
import logging
import re
import struct
import zipfile
from pathlib import PurePosixPath
from typing import NamedTuple

from feilun.core.errors import BadInput
from feilun.core.registry import names

logger = logging.getLogger(__name__)


class _Refused(NamedTuple):
    """A type no parser reads: what it is, and what to do instead."""

    kind: str
    fix: str


_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".docm": "docx",
    ".dotx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdown": "markdown",
    ".mkd": "markdown",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".jsonlines": "jsonl",
    ".json": "jsonl",  # the jsonl parser also reads one JSON array of records
    ".zip": "zip",
}
_IMAGE_FIX = "extract its text first (OCR into a PDF with a text layer or a .txt), then ingest that"
_ARCHIVE_FIX = "unpack it and ingest the files, or re-pack them as a .zip"
_OFFICE_FIX = "save it as .docx or PDF (or export tables as CSV) and ingest that"
_MEDIA_FIX = "transcribe it and ingest the transcript"
_OTHER_FIX = "convert it to one of the supported types, or leave it out of the batch"
# (magic at offset 0, the type it marks); checked before any extension.
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", _Refused("a PNG image", _IMAGE_FIX)),
    (b"\xff\xd8\xff", _Refused("a JPEG image", _IMAGE_FIX)),
    (b"GIF87a", _Refused("a GIF image", _IMAGE_FIX)),
    (b"GIF89a", _Refused("a GIF image", _IMAGE_FIX)),
    (b"II*\x00", _Refused("a TIFF image", _IMAGE_FIX)),
    (b"MM\x00*", _Refused("a TIFF image", _IMAGE_FIX)),
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        _Refused("a legacy or password-protected Office file", _OFFICE_FIX),
    ),
    (b"{\\rtf", _Refused("an RTF document", _OFFICE_FIX)),
    (b"\x1f\x8b", _Refused("a gzip archive", _ARCHIVE_FIX)),
    (b"\xfd7zXZ\x00", _Refused("an xz archive", _ARCHIVE_FIX)),
    (b"7z\xbc\xaf\x27\x1c", _Refused("a 7-Zip archive", _ARCHIVE_FIX)),
    (b"Rar!\x1a\x07", _Refused("a RAR archive", _ARCHIVE_FIX)),
    (b"(\xb5/\xfd", _Refused("a zstd archive", _ARCHIVE_FIX)),
    (b"\x7fELF", _Refused("an ELF executable", _OTHER_FIX)),
    (b"\xcf\xfa\xed\xfe", _Refused("a Mach-O executable", _OTHER_FIX)),
    (b"\xca\xfe\xba\xbe", _Refused("a Java class or Mach-O executable", _OTHER_FIX)),
    (b"\x00asm", _Refused("a WebAssembly module", _OTHER_FIX)),
    (
        b"SQLite format 3\x00",
        _Refused("an SQLite database", "export the table as CSV and ingest that"),
    ),
    (b"OggS\x00", _Refused("an Ogg audio or video file", _MEDIA_FIX)),
    (b"fLaC", _Refused("a FLAC audio file", _MEDIA_FIX)),
    (b"\x1aE\xdf\xa3", _Refused("a Matroska or WebM video", _MEDIA_FIX)),
)
# Extensions nothing reads, for files whose content matched no magic (empty, corrupt, text).
_UNSUPPORTED_EXTENSIONS = {
    ".doc": _Refused("a legacy Word document", _OFFICE_FIX),
    ".xls": _Refused("a legacy Excel workbook", _OFFICE_FIX),
    ".xlsx": _Refused("an Excel workbook", _OFFICE_FIX),
    ".ppt": _Refused("a legacy PowerPoint deck", _OFFICE_FIX),
    ".pptx": _Refused("a PowerPoint deck", _OFFICE_FIX),
    ".odt": _Refused("an OpenDocument file", _OFFICE_FIX),
    ".rtf": _Refused("an RTF document", _OFFICE_FIX),
    ".svg": _Refused("an SVG image", _IMAGE_FIX),
    ".bmp": _Refused("a BMP image", _IMAGE_FIX),
    ".webp": _Refused("a WebP image", _IMAGE_FIX),
    ".exe": _Refused("a Windows executable", _OTHER_FIX),
    ".dll": _Refused("a Windows library", _OTHER_FIX),
    ".tar": _Refused("a tar archive", _ARCHIVE_FIX),
    ".gz": _Refused("a gzip archive", _ARCHIVE_FIX),
    ".7z": _Refused("a 7-Zip archive", _ARCHIVE_FIX),
    ".rar": _Refused("a RAR archive", _ARCHIVE_FIX),
}
_OOXML_PARTS = (  # an Office Open XML zip is named by the folder of its main part
    ("word/", "docx"),
    ("xl/", _Refused("an Excel workbook (.xlsx)", _OFFICE_FIX)),
    ("ppt/", _Refused("a PowerPoint deck (.pptx)", _OFFICE_FIX)),
)
# Markup opening, after an optional XML declaration and comments.
_MARKUP = re.compile(
    rb"\s*(?:<\?xml[^>]*>\s*|<!--.*?-->\s*)*<(!doctype\s+html|html|head|body|svg)\b",
    re.IGNORECASE | re.DOTALL,
)
_MAX_SNIFFED_ENTRIES = 100_000  # more: a zip, not a document (zipfile reads them all first)
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x19\x1c-\x1f]")


def sniff_type(name: str, data: bytes) -> str:
    """The parser name for the file `name` with bytes `data`, or "zip" for an archive."""
    if not data:
        raise BadInput(
            f"{name} is empty (0 bytes)", "check that it was copied or exported completely"
        )
    ext = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    found = _sniff_content(data, ext)
    if isinstance(found, str):
        return found
    if found is None:
        if ext in _EXTENSIONS:
            return _EXTENSIONS[ext]
        found = _UNSUPPORTED_EXTENSIONS.get(ext)
    if found is None:
        if _looks_like_text(data[:8192]):
            logger.debug("%s: unknown extension %r, reading it as text", name, ext)
            return "text"
        found = _Refused("binary data of an unknown type", _OTHER_FIX)
    plugin = ext.lstrip(".")  # a third-party parser registered for this extension
    if plugin and plugin in names("parsers"):
        return plugin
    raise BadInput(
        f"{name} is {found.kind}, which Feilun cannot ingest; "
        f"supported types: {', '.join(supported_types())}",
        found.fix,
    )


def supported_types() -> list[str]:
    """Every file type some parser reads, plus "zip"."""
    return sorted({*names("parsers"), "zip"})


def _sniff_content(data: bytes, ext: str) -> str | _Refused | None:
    """The type the magic bytes mark (readable or not), or None when they mark none."""
    head = data[:1024]
    if head.startswith(b"%PDF-") or (ext == ".pdf" and b"%PDF-" in head):
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _zip_kind(data, ext)
    for magic, refused in _MAGIC:
        if head.startswith(magic):
            return refused
    if head.startswith(b"MZ") and b"\x00" in head:
        return _Refused("a Windows executable", _OTHER_FIX)
    if head.startswith(b"RIFF") and head[8:12] in (b"WEBP", b"WAVE", b"AVI "):
        return _Refused("a RIFF media file (WebP, WAV or AVI)", _MEDIA_FIX)
    if head[4:8] == b"ftyp":
        return _Refused("an MP4, MOV or HEIC media file", _MEDIA_FIX)
    if head.startswith(b"PAR1") and data.endswith(b"PAR1"):
        return _Refused("a Parquet file", "export it as JSONL or CSV and ingest that")
    if data[257:262] == b"ustar":
        return _Refused("a tar archive", _ARCHIVE_FIX)
    markup = _MARKUP.match(_ascii_head(data))
    if markup is None:
        return None
    if markup.group(1).lower() == b"svg":
        return _Refused("an SVG image", _IMAGE_FIX)
    return "html"


def declared_zip_entries(data: bytes) -> int:
    """How many entries a ZIP's end record declares, read before trusting zipfile with it."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - (1 << 16) - 22))
    if at < 0 or at + 22 > len(data):
        return 0
    (count,) = struct.unpack_from("<H", data, at + 10)
    locator = at - 20  # ZIP64: the real count is in the record the locator points to
    if count == 0xFFFF and locator >= 0 and data[locator : locator + 4] == b"PK\x06\x07":
        (record,) = struct.unpack_from("<Q", data, locator + 8)
        if data[record : record + 4] == b"PK\x06\x06" and record + 40 <= len(data):
            (count,) = struct.unpack_from("<Q", data, record + 32)
    return int(count)


def _zip_kind(data: bytes, ext: str) -> str | _Refused:
    """A .docx is a zip with word/ parts; other Office and OpenDocument zips are refused."""
    if declared_zip_entries(data) > _MAX_SNIFFED_ENTRIES:
        return "zip"  # no document has that many parts; expand_zip refuses or reads it
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.namelist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError):
        # Unreadable: the parser of what the name says reports the damage.
        return "docx" if _EXTENSIONS.get(ext) == "docx" else "zip"
    if "[Content_Types].xml" in members:
        for prefix, kind in _OOXML_PARTS:
            if any(m.startswith(prefix) for m in members):
                return kind
        return _Refused("an Office Open XML file", _OFFICE_FIX)
    mimetype = data[30:200]  # OpenDocument and EPUB store their type first, uncompressed
    if mimetype.startswith(b"mimetypeapplication/vnd.oasis.opendocument"):
        return _Refused("an OpenDocument file (.odt, .ods or .odp)", _OFFICE_FIX)
    if mimetype.startswith(b"mimetypeapplication/epub+zip"):
        return _Refused("an EPUB e-book", _OTHER_FIX)
    return "zip"


def _ascii_head(data: bytes) -> bytes:
    """The first bytes without a BOM, UTF-16 narrowed to ASCII: enough to match markup."""
    head = data[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16-le" if head[0] == 0xFF else "utf-16-be"
        return head[2:].decode(encoding, errors="ignore").encode("ascii", errors="ignore")
    return head


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    if b"\x00" in head:
        return False
    return len(_CONTROL_BYTES.findall(head)) <= len(head) // 100
