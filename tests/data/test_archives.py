"""expand_zip on real documents zipped here and on hostile archives built here in memory.

References no one here wrote: zipfile reads back what we build (encrypted members with the
password, GBK names with metadata_encoding), and bz2 expands the bomb to the full 1 GiB.
"""

from __future__ import annotations

import bz2
import io
import random
import stat
import struct
import time
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from feilun.core.errors import BadInput
from feilun.data.archives import ArchiveLimits, ArchiveMember, expand_zip
from feilun.data.decoding import decode_text

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ZH_DOCUMENTS = SHARED / "documents" / "zh"
ZH_REGULATIONS = SHARED / "industry" / "docs" / "zh"
GIB = 1 << 30


@dataclass
class Entry:
    """One member of an archive written byte by byte, for what zipfile refuses to write."""

    name: bytes
    payload: bytes  # as stored: compressed and/or encrypted
    size: int  # uncompressed, as declared in the headers
    crc: int
    method: int = zipfile.ZIP_STORED
    flags: int = 0
    extra: bytes = b""
    external_attr: int = 0


def raw_zip(entries: list[Entry], made_by: int = 20) -> bytes:
    """A ZIP file as the spec lays it out: local headers and data, central directory, end."""
    out, central = bytearray(), bytearray()
    for e in entries:
        offset = len(out)
        fields = (e.flags, e.method, 0, 0x21, e.crc, len(e.payload), e.size, len(e.name))
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, *fields, len(e.extra))
        out += e.name + e.extra + e.payload
        central += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            made_by,
            20,
            *fields,
            len(e.extra),
            0,
            0,
            0,
            e.external_attr,
            offset,
        )
        central += e.name + e.extra
    n = len(entries)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    return bytes(out + central + end)


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def zip_of(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def by_path(members: list[ArchiveMember]) -> dict[str, ArchiveMember]:
    return {m.path: m for m in members}


def bzip2_of_zeros(total: int, block: int = 16 << 20) -> bytes:
    """A valid bzip2 stream of `total` zero bytes: one compressed block, repeated bit for bit.

    Blocks are independent and not byte-aligned, so the stream is rebuilt as a bit string:
    "BZh9", the block n times, the end-of-stream magic and the combined CRC.
    """
    one = bz2.compress(bytes(block), 9)
    bits = bin(int.from_bytes(one, "big"))[2:].zfill(len(one) * 8)
    end = bits.rindex(format(0x177245385090, "048b"), 0, len(bits) - 32)
    body = bits[32:end]  # block magic, block CRC, data
    block_crc, combined = int(body[48:80], 2), 0
    for _ in range(total // block):
        combined = (((combined << 1) | (combined >> 31)) & 0xFFFFFFFF) ^ block_crc
    stream = bits[:32] + body * (total // block) + bits[end : end + 48] + format(combined, "032b")
    stream += "0" * (-len(stream) % 8)
    return int(stream, 2).to_bytes(len(stream) // 8, "big")


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    """A ZIP of a few KB whose one member, honestly declared, expands to 1 GiB of zeros."""
    zeros, crc = bytes(64 << 20), 0
    for _ in range(GIB // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    payload = bzip2_of_zeros(GIB)
    return raw_zip([Entry(b"report.txt", payload, GIB, crc, method=zipfile.ZIP_BZIP2)])


def test_real_documents_come_back_byte_for_byte(tmp_path: Path, monkeypatch) -> None:
    files = {f"条例/{p.name}": p.read_bytes() for p in sorted(ZH_DOCUMENTS.iterdir())}
    monkeypatch.chdir(tmp_path)
    members = expand_zip(zip_of(files), "docs.zip")
    assert {m.path: m.data for m in members} == files  # the .docx (a zip) is not expanded
    assert all(m.problem is None for m in members)
    assert list(tmp_path.iterdir()) == []  # nothing was written anywhere


def test_stored_and_bzip2_members_are_read() -> None:
    text = next(ZH_REGULATIONS.glob("消防法*.md")).read_bytes()
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_BZIP2):
        assert expand_zip(zip_of({"a.md": text}, method), "a.zip")[0].data == text


def test_unsafe_paths_are_refused_and_the_rest_is_read() -> None:
    unsafe = ["../../etc/passwd", "/etc/passwd", "C:\\Windows\\evil.txt", "docs\\..\\..\\evil.txt"]
    data = zip_of({**dict.fromkeys(unsafe, b"owned"), "docs/ok.txt": b"fine"})
    members = by_path(expand_zip(data, "slip.zip"))
    assert members["docs/ok.txt"].data == b"fine"
    reasons = {"'..' component", "absolute path", "drive letter"}
    for name in unsafe:
        problem = members[name].problem
        assert members[name].data is None and problem is not None
        assert "unsafe path" in problem.message and any(r in problem.message for r in reasons)
        assert problem.fix


def test_unsafe_paths_inside_a_nested_archive_are_refused_too() -> None:
    inner = zip_of({"/etc/passwd": b"owned", "../up.txt": b"owned", "in.txt": b"fine"})
    members = by_path(expand_zip(zip_of({"inner.zip": inner}), "outer.zip"))
    assert members["inner.zip/in.txt"].data == b"fine"
    assert "absolute path" in members["inner.zip//etc/passwd"].problem.message
    assert "'..' component" in members["inner.zip/../up.txt"].problem.message


def test_a_symlink_member_is_refused() -> None:
    link = zipfile.ZipInfo("docs/passwd")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(link, "/etc/passwd")
        archive.writestr("docs/a.txt", "text")
    members = by_path(expand_zip(buffer.getvalue(), "links.zip"))
    assert members["docs/a.txt"].data == b"text"
    assert members["docs/passwd"].data is None
    assert "symbolic link" in members["docs/passwd"].problem.message


def test_a_gib_bomb_of_a_few_kb_stops_at_the_ratio_cap(gib_bomb: bytes) -> None:
    header = zipfile.ZipFile(io.BytesIO(gib_bomb)).infolist()[0]
    assert len(gib_bomb) < 8192 and header.file_size == GIB
    tracemalloc.start()
    started = time.perf_counter()
    [member] = expand_zip(gib_bomb, "bomb.zip")
    seconds = time.perf_counter() - started
    _, peak_bytes = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert member.data is None and "compression ratio over 200:1" in member.problem.message
    assert seconds < 2 and peak_bytes < 32 << 20


def test_the_bomb_stops_at_the_size_cap_when_ratios_are_allowed(gib_bomb: bytes) -> None:
    limits = ArchiveLimits(max_ratio=1e12, max_member_bytes=8 << 20)
    [member] = expand_zip(gib_bomb, "bomb.zip", limits)
    assert "per-file limit of 8388608 bytes" in member.problem.message


def test_the_bomb_breaks_the_total_cap_for_the_whole_archive(gib_bomb: bytes) -> None:
    limits = ArchiveLimits(max_ratio=1e12, max_total_bytes=16 << 20)
    with pytest.raises(BadInput, match=r"bomb\.zip expands to more than 16777216 bytes"):
        expand_zip(gib_bomb, "bomb.zip", limits)


@pytest.mark.slow
def test_the_bomb_really_expands_to_one_gib(gib_bomb: bytes) -> None:
    payload = gib_bomb[30 + len("report.txt") : -(46 + len("report.txt") + 22)]
    inflater, total, crc = bz2.BZ2Decompressor(), 0, 0
    out = inflater.decompress(payload, 1 << 24)
    while out:
        total, crc = total + len(out), zlib.crc32(out, crc)
        out = b"" if inflater.eof else inflater.decompress(b"", 1 << 24)
    header = zipfile.ZipFile(io.BytesIO(gib_bomb)).infolist()[0]
    assert (total, crc) == (GIB, header.CRC)


def test_a_header_that_understates_the_size_is_caught() -> None:
    zeros = bytes(4 << 20)
    lying = Entry(b"small.txt", deflated(zeros), 1024, zlib.crc32(zeros), zipfile.ZIP_DEFLATED)
    [member] = expand_zip(raw_zip([lying]), "liar.zip", ArchiveLimits(max_ratio=1e12))
    assert "expands past the 1024 bytes its header declares" in member.problem.message


def test_a_nested_zip_bomb_is_defused_member_by_member() -> None:
    # 10 inner zips of 10 members of 10 MiB zeros: 1 GiB in all, from about 1 MB.
    zeros = bytes(10 << 20)
    payload, crc = deflated(zeros), zlib.crc32(zeros)
    inner = raw_zip(
        [Entry(f"zeros{i}.txt".encode(), payload, len(zeros), crc, 8) for i in range(10)]
    )
    outer = zip_of({f"part{i}.zip": inner for i in range(10)})
    assert len(outer) < 2 << 20
    members = expand_zip(outer, "nested.zip")
    assert len(members) == 100
    assert {m.path for m in members} == {
        f"part{i}.zip/zeros{j}.txt" for i in range(10) for j in range(10)
    }
    assert all(m.data is None and "compression ratio" in m.problem.message for m in members)


def test_archives_nest_two_levels_deep_and_no_deeper() -> None:
    third = zip_of({"deep.txt": b"three levels down"})
    second = zip_of({"second.txt": b"two levels down", "third.zip": third})
    members = by_path(expand_zip(zip_of({"second.zip": second}), "first.zip"))
    assert members["second.zip/second.txt"].data == b"two levels down"
    problem = members["second.zip/third.zip"].problem
    assert problem is not None and "nested more than 2 levels" in problem.message
    one_level = by_path(
        expand_zip(zip_of({"second.zip": second}), "x.zip", ArchiveLimits(max_depth=1))
    )
    assert "second.zip" in one_level and one_level["second.zip"].problem is not None


def test_too_many_members_refuses_the_archive() -> None:
    data = zip_of({f"{i}.txt": b"x" for i in range(5)})
    with pytest.raises(BadInput, match="holds more than 4 entries"):
        expand_zip(data, "many.zip", ArchiveLimits(max_members=4))
    assert len(expand_zip(data, "many.zip", ArchiveLimits(max_members=5))) == 5


def zipcrypto(plain: bytes, password: bytes, crc: int) -> bytes:
    """PKWARE traditional encryption (APPNOTE 6.1), for a member zipfile can decrypt."""
    table = []
    for n in range(256):
        for _ in range(8):
            n = (n >> 1) ^ 0xEDB88320 if n & 1 else n >> 1
        table.append(n)
    keys = [0x12345678, 0x23456789, 0x34567890]

    def update(byte: int) -> None:
        keys[0] = (keys[0] >> 8) ^ table[(keys[0] ^ byte) & 0xFF]
        keys[1] = ((keys[1] + (keys[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        keys[2] = (keys[2] >> 8) ^ table[(keys[2] ^ (keys[1] >> 24)) & 0xFF]

    for byte in password:
        update(byte)
    out = bytearray()
    for byte in random.Random(0).randbytes(11) + bytes([crc >> 24]) + plain:
        k = keys[2] | 2
        out.append(byte ^ (((k * (k ^ 1)) >> 8) & 0xFF))
        update(byte)
    return bytes(out)


def test_an_encrypted_member_is_a_problem_and_its_sibling_is_read() -> None:
    secret = next(ZH_REGULATIONS.glob("消防法*.md")).read_bytes()
    crc = zlib.crc32(secret)
    locked = Entry(b"secret.md", zipcrypto(secret, b"pw", crc), len(secret), crc, flags=0x1)
    plain = Entry(b"open.txt", b"open", 4, zlib.crc32(b"open"))
    data = raw_zip([locked, plain])
    assert zipfile.ZipFile(io.BytesIO(data)).read("secret.md", pwd=b"pw") == secret
    members = by_path(expand_zip(data, "locked.zip"))
    assert members["open.txt"].data == b"open"
    assert members["secret.md"].data is None
    assert "secret.md is encrypted" in members["secret.md"].problem.message
    assert "password" in members["secret.md"].problem.fix


def test_a_truncated_archive_is_bad_input() -> None:
    data = zip_of({p.name: p.read_bytes() for p in ZH_DOCUMENTS.iterdir()})
    with pytest.raises(BadInput, match=r"cut\.zip is not a readable ZIP archive"):
        expand_zip(data[: len(data) // 2], "cut.zip")


def test_a_damaged_member_is_a_problem() -> None:
    text = next(ZH_REGULATIONS.glob("消防法*.md")).read_bytes()
    data = bytearray(zip_of({"a.md": text, "b.txt": b"intact"}))
    data[200:210] = bytes(10)  # inside a.md's deflate stream
    members = by_path(expand_zip(bytes(data), "hurt.zip"))
    assert members["b.txt"].data == b"intact"
    assert members["a.md"].data is None and "damaged" in members["a.md"].problem.message


def test_overlapping_entries_are_refused() -> None:
    data = zip_of({"a.txt": b"a" * 100})
    directory = data.index(b"PK\x01\x02")
    record, end = data[directory : data.index(b"PK\x05\x06")], data[data.index(b"PK\x05\x06") :]
    # Two directory entries that share one local file: the trick of non-recursive zip bombs.
    twice = end[:8] + struct.pack("<HHI", 2, 2, 2 * len(record)) + end[16:]
    with pytest.raises(BadInput, match="overlap"):
        expand_zip(data[:directory] + record + record + twice, "overlap.zip")


def test_gbk_names_from_a_2014_chinese_windows_zip() -> None:
    # Chinese Windows (cp936) wrote GBK names, no UTF-8 flag, "made by" MS-DOS; GBK text inside.
    regulations = sorted(ZH_REGULATIONS.glob("*.md"))[:4]
    entries = []
    for path in regulations:
        text = path.read_text(encoding="utf-8").encode("gbk")
        name = f"安全法规\\{path.stem}.txt".encode("gbk")
        entries.append(Entry(name, deflated(text), len(text), zlib.crc32(text), 8))
    data = raw_zip(entries, made_by=0)
    reference = zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk").namelist()
    members = expand_zip(data, "法规2014.zip")
    assert [m.path for m in members] == [n.replace("\\", "/") for n in reference]
    assert [m.path for m in members] == [f"安全法规/{p.stem}.txt" for p in regulations]
    for member, path in zip(members, regulations, strict=True):
        assert decode_text(member.data, member.path)[0] == path.read_text(encoding="utf-8")


def test_utf8_names_without_the_flag_and_unicode_path_fields() -> None:
    # macOS writes UTF-8 names without the flag; 7-Zip and WinRAR add the UTF-8 name in an
    # Info-ZIP Unicode Path field (0x7075) beside a legacy name, tied to it by the legacy CRC.
    macos = Entry("条例/说明.txt".encode(), b"x", 1, zlib.crc32(b"x"))
    field = b"\x01" + struct.pack("<I", zlib.crc32(b"old_.txt")) + "新名.txt".encode()
    extra = struct.pack("<HH", 0x7075, len(field)) + field
    winrar = Entry(b"old_.txt", b"x", 1, zlib.crc32(b"x"), extra=extra)
    paths = [m.path for m in expand_zip(raw_zip([macos, winrar]), "names.zip")]
    assert paths == ["条例/说明.txt", "新名.txt"]


def test_unsupported_compression_is_a_problem() -> None:
    members = by_path(expand_zip(zip_of({"a.txt": b"abc" * 100}, zipfile.ZIP_LZMA), "x.zip"))
    assert "uses LZMA compression" in members["a.txt"].problem.message


def test_directories_and_macos_metadata_are_not_members() -> None:
    data = zip_of(
        {
            "docs/": b"",
            "docs/a.txt": b"a",
            "__MACOSX/docs/._a.txt": b"\x00\x05",
            "docs/.DS_Store": b"\x00",
        }
    )
    assert [m.path for m in expand_zip(data, "mac.zip")] == ["docs/a.txt"]


def test_a_huge_declared_entry_count_is_refused_before_the_directory_is_read() -> None:
    data = bytearray(zip_of({"a.txt": b"a"}))
    end = data.rindex(b"PK\x05\x06")
    data[end + 8 : end + 12] = struct.pack("<HH", 60_000, 60_000)  # a million-entry bomb's claim
    with pytest.raises(BadInput, match=r"forged\.zip holds more than 10000 entries"):
        expand_zip(bytes(data), "forged.zip")
