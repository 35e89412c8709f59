"""Safe expansion of ZIP archives, entirely in memory: nothing is ever written to disk.

Header sizes are never trusted: every member is inflated through a streaming cap on its size,
its compression ratio and the archive's total, so a zip bomb costs at most the caps. Unsafe or
unreadable members come back as problem members; an archive that cannot be read at all, or
that goes over the caps for the whole archive, is BadInput.
"""

from __future__ import annotations

import bz2
import io
import logging
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from feilun.core.errors import BadInput
from feilun.data.decoding import detect_encoding
from feilun.data.sniff import declared_zip_entries, sniff_type

logger = logging.getLogger(__name__)

_CHUNK_BYTES = 1 << 20  # most bytes one decompressor call may produce
_INPUT_BYTES = 1 << 16  # compressed bytes fed per call
_RATIO_GRACE_BYTES = 1 << 20  # small files may compress very well; judge ratios past this
_METHODS = {0: "stored", 8: "deflate", 12: "bzip2"}
_METHOD_NAMES = {9: "Deflate64", 14: "LZMA", 93: "Zstandard", 95: "XZ", 98: "PPMd"}
_NAME_ENCODINGS = ("utf-8", "gb18030", "cp950", "cp932", "cp949", "cp437")
_UNICODE_PATH_TAG = 0x7075  # Info-ZIP extra field carrying the UTF-8 name
_SKIPPED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$)")  # macOS metadata, not documents
_DRIVE = re.compile(r"^[A-Za-z]:")
_FIX_DAMAGED = "copy or download the archive again, or ingest its files directly"


@dataclass(frozen=True)
class ArchiveLimits:
    """Caps on what one archive may expand to; nested archives count towards its totals."""

    max_total_bytes: int = 1 << 30  # all members together, uncompressed
    max_member_bytes: int = 256 << 20  # one member, uncompressed
    max_members: int = 10_000  # entries (files and folders), across nested archives
    max_ratio: float = 200.0  # uncompressed / compressed bytes of one member
    max_depth: int = 2  # archive levels expanded: 2 = a zip inside the zip, no deeper


@dataclass(frozen=True)
class ArchiveMember:
    """One file of an archive: its bytes, or the problem that kept them out."""

    path: str  # inside the archive, "/"-separated; "inner.zip/doc.txt" for nested archives
    data: bytes | None
    problem: BadInput | None


class _OverArchiveLimit(BadInput):
    """The whole archive goes over a cap: it is refused, not just one member."""


@dataclass
class _Budget:
    limits: ArchiveLimits
    name: str
    total_bytes: int = 0
    members: int = 0

    def add_members(self, count: int) -> None:
        if self.members + count > self.limits.max_members:
            raise _OverArchiveLimit(
                f"{self.name} holds more than {self.limits.max_members} entries",
                "split it into smaller archives, or raise the archive member limit",
            )
        self.members += count

    def add_bytes(self, count: int) -> None:
        self.total_bytes += count
        if self.total_bytes > self.limits.max_total_bytes:
            raise _OverArchiveLimit(
                f"{self.name} expands to more than {self.limits.max_total_bytes} bytes "
                "(a zip bomb, or too big to ingest at once)",
                "split it into smaller archives, or raise the archive size limit",
            )


def expand_zip(data: bytes, name: str, limits: ArchiveLimits | None = None) -> list[ArchiveMember]:
    """The files of the ZIP archive `name`, nested archives expanded; BadInput if unreadable."""
    limits = limits or ArchiveLimits()
    return _expand(data, name, "", 1, _Budget(limits, name))


def _expand(
    data: bytes, shown: str, prefix: str, depth: int, budget: _Budget
) -> list[ArchiveMember]:
    """Members of one archive level; `prefix` is its path inside the outermost archive."""
    declared = declared_zip_entries(data)
    budget.add_members(declared)  # before zipfile reads that many entries into memory
    infos, entries = _read_directory(data, shown)
    budget.add_members(max(0, entries - declared))
    encoding = _name_encoding(infos)
    members: list[ArchiveMember] = []
    for info in infos:
        name = _entry_name(info, encoding)
        entry = prefix + name
        where = f"{budget.name}: {entry}"
        try:
            _check_entry(info, name, where)
            content = _inflate(data, info, where, budget)
        except _OverArchiveLimit:
            raise
        except BadInput as e:
            members.append(ArchiveMember(entry, None, e))
            continue
        path = "/".join(part for part in re.split(r"[/\\]", entry) if part not in ("", "."))
        if not _is_plain_zip(path, content):
            members.append(ArchiveMember(path, content, None))
        elif depth >= budget.limits.max_depth:
            problem = BadInput(
                f"{where} is an archive nested more than {depth} levels deep",
                "unzip it and ingest the inner files directly",
            )
            members.append(ArchiveMember(path, None, problem))
        else:
            members.extend(_expand_nested(content, path, depth, budget))
    return members


def _expand_nested(data: bytes, path: str, depth: int, budget: _Budget) -> list[ArchiveMember]:
    try:
        return _expand(data, f"{budget.name}: {path}", path + "/", depth + 1, budget)
    except _OverArchiveLimit:
        raise
    except BadInput as e:
        return [ArchiveMember(path, None, e)]


def _read_directory(data: bytes, name: str) -> tuple[list[zipfile.ZipInfo], int]:
    """The file entries of the central directory, none overlapping another; and all entries."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, struct.error) as e:
        raise BadInput(f"{name} is not a readable ZIP archive ({e})", _FIX_DAMAGED) from e
    by_offset = sorted(infos, key=lambda i: i.header_offset)
    ends = [i.header_offset + 30 + i.compress_size for i in by_offset]
    if any(end > nxt.header_offset for end, nxt in zip(ends, by_offset[1:], strict=False)):
        raise BadInput(
            f"{name} has entries that overlap each other (a zip-bomb trick)",
            "re-create the archive with a standard zip tool",
        )
    files = [i for i in infos if not i.is_dir() and not _SKIPPED.search(i.filename)]
    return files, len(infos)


def _name_encoding(infos: list[zipfile.ZipInfo]) -> str:
    """One encoding for the names not flagged UTF-8: zips from Chinese Windows use GBK."""
    raw = [_raw_name(i) for i in infos if not i.flag_bits & 0x800]
    sample = b"\n".join(name for name in raw if not name.isascii())
    if not sample:
        return "cp437"
    try:
        sample.decode("utf-8")
        return "utf-8"  # macOS and Linux tools write UTF-8 without setting the flag
    except UnicodeDecodeError:
        return detect_encoding(sample, _NAME_ENCODINGS)


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    return info.orig_filename.encode("cp437")  # zipfile decoded unflagged names as cp437


def _entry_name(info: zipfile.ZipInfo, encoding: str) -> str:
    if info.flag_bits & 0x800:
        return info.orig_filename
    raw = _raw_name(info)
    unicode_path = _unicode_path_field(info.extra, raw)
    if unicode_path is not None:
        return unicode_path
    return raw.decode(encoding, errors="replace")


def _unicode_path_field(extra: bytes, raw_name: bytes) -> str | None:
    """The UTF-8 name 7-Zip and WinRAR store beside a legacy one, if it matches that one."""
    at = 0
    while at + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, at)
        body = extra[at + 4 : at + 4 + size]
        if tag == _UNICODE_PATH_TAG and len(body) > 5 and body[0] == 1:
            (crc,) = struct.unpack_from("<I", body, 1)
            if crc == zlib.crc32(raw_name):
                return body[5:].decode("utf-8", errors="replace")
        at += 4 + size
    return None


def _check_entry(info: zipfile.ZipInfo, name: str, where: str) -> None:
    """BadInput for an entry that must not be read: unsafe path, link, encrypted, odd method."""
    unsafe = _unsafe_path_reason(name)
    if unsafe:
        raise BadInput(
            f"{where} has an unsafe path ({unsafe}) and was not extracted",
            "re-create the archive with relative paths inside one folder",
        )
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise BadInput(
            f"{where} is a symbolic link; links are never followed",
            "put the file itself in the archive instead of a link to it",
        )
    if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        raise BadInput(f"{where} is not a regular file", "leave it out of the archive")
    if info.flag_bits & 0x1:
        raise BadInput(
            f"{where} is encrypted",
            "extract it with its password and ingest the files, or re-zip without a password",
        )
    if info.compress_type not in _METHODS:
        method = _METHOD_NAMES.get(info.compress_type, f"#{info.compress_type}")
        raise BadInput(
            f"{where} uses {method} compression, which Feilun does not read",
            "re-zip it with standard (Deflate) compression",
        )


def _unsafe_path_reason(path: str) -> str:
    if "\x00" in path:
        return "NUL character"
    if path.startswith(("/", "\\")):
        return "absolute path"
    if _DRIVE.match(path):
        return "drive letter"
    if ".." in re.split(r"[/\\]", path):
        return "'..' component"
    return ""


def _inflate(data: bytes, info: zipfile.ZipInfo, where: str, budget: _Budget) -> bytes:
    """The member's bytes, read through the caps; BadInput when a cap or a check fails."""
    limits = budget.limits
    raw = _compressed_bytes(data, info, where)
    parts: list[bytes] = []
    size = crc = 0
    for chunk in _inflated_chunks(raw, info.compress_type, where):
        size += len(chunk)
        problem = ""
        if size > limits.max_member_bytes:
            problem = f"expands past the per-file limit of {limits.max_member_bytes} bytes"
        elif size > info.file_size:
            problem = f"expands past the {info.file_size} bytes its header declares"
        elif size > _RATIO_GRACE_BYTES and size > limits.max_ratio * max(len(raw), 1):
            problem = f"has a compression ratio over {limits.max_ratio:.0f}:1"
        if problem:
            raise BadInput(
                f"{where} {problem}: a zip bomb, or too big to ingest",
                "unpack it yourself and ingest the files that are real documents",
            )
        budget.add_bytes(len(chunk))
        crc = zlib.crc32(chunk, crc)
        parts.append(chunk)
    if size != info.file_size or crc != info.CRC:
        raise BadInput(f"{where} is damaged (checksum mismatch)", _FIX_DAMAGED)
    return b"".join(parts)


def _compressed_bytes(data: bytes, info: zipfile.ZipInfo, where: str) -> memoryview:
    at = info.header_offset
    header = data[at : at + 30]
    if len(header) < 30 or header[:4] != b"PK\x03\x04":
        raise BadInput(f"{where} is damaged (no local header)", _FIX_DAMAGED)
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    start = at + 30 + name_len + extra_len
    raw = memoryview(data)[start : start + info.compress_size]
    if len(raw) < info.compress_size:
        raise BadInput(f"{where} is damaged (its data is cut short)", _FIX_DAMAGED)
    return raw


def _inflated_chunks(raw: memoryview, method: int, where: str) -> Iterator[bytes]:
    """Uncompressed bytes in chunks of at most _CHUNK_BYTES, whatever the input claims."""
    if method == zipfile.ZIP_STORED:
        for at in range(0, len(raw), _CHUNK_BYTES):
            yield bytes(raw[at : at + _CHUNK_BYTES])
        return
    try:
        if method == zipfile.ZIP_DEFLATED:
            yield from _inflate_deflate(raw)
        else:
            yield from _inflate_bzip2(raw)
    except (zlib.error, OSError, EOFError) as e:
        raise BadInput(f"{where} is damaged ({e})", _FIX_DAMAGED) from e


def _inflate_deflate(raw: memoryview) -> Iterator[bytes]:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    for at in range(0, len(raw), _INPUT_BYTES):
        pending: bytes | memoryview = raw[at : at + _INPUT_BYTES]
        while pending and not inflater.eof:
            out = inflater.decompress(pending, _CHUNK_BYTES)
            pending = inflater.unconsumed_tail
            if out:
                yield out
        if inflater.eof:
            return
    while not inflater.eof:  # output still held back by the chunk cap
        out = inflater.decompress(b"", _CHUNK_BYTES)
        if not out:
            raise EOFError("compressed data ends early")
        yield out


def _inflate_bzip2(raw: memoryview) -> Iterator[bytes]:
    inflater = bz2.BZ2Decompressor()
    for at in range(0, len(raw), _INPUT_BYTES):
        out = inflater.decompress(raw[at : at + _INPUT_BYTES], _CHUNK_BYTES)
        if out:
            yield out
        while not inflater.eof and not inflater.needs_input:
            out = inflater.decompress(b"", _CHUNK_BYTES)
            if out:
                yield out
        if inflater.eof:
            return
    raise EOFError("compressed data ends early")


def _is_plain_zip(path: str, content: bytes) -> bool:
    """A nested archive to expand (a .docx is a zip too, but one the docx parser reads)."""
    if not content.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return False
    try:
        return sniff_type(path, content) == "zip"
    except BadInput:
        return False
