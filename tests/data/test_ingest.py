"""The ingest loop on the shared real documents and on a batch of every kind of bad input."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from feilun.core.errors import ConfigError
from feilun.core.records import Document, Quarantine
from feilun.data.collections import (
    document_source_id,
    list_collections,
    list_documents,
    list_quarantine,
    original_sha256,
)
from feilun.data.ingest import (
    FileOutcome,
    IngestLimits,
    IngestReport,
    ProgressEvent,
    detect_language,
    find_files,
    ingest,
)
from feilun.data.parsing import ParseOptions
from feilun.data.pipeline import items_from_documents
from feilun.data.sandbox import Sandbox
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import open_database
from feilun.store.migrate import upgrade
from feilun.store.schema import records

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DOCUMENTS = SHARED / "documents"
INDUSTRY = SHARED / "industry" / "docs"
ZH_MD = DOCUMENTS / "zh" / "shanghai-smoking-control-regulation.md"
EN_MD = INDUSTRY / "en" / "US-Code-Title49-Ch51-Transportation-of-Hazardous-Material.md"
PDF = DOCUMENTS / "pdf" / "pdflatex-4-pages.pdf"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """Real worker processes, shared by the tests of this module (spawning costs ~0.3 s)."""
    with Sandbox(workers=2) as shared:
        yield shared


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[SqlCatalog]:
    database = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(database)
    yield SqlCatalog(database)
    database.close()


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def _files_under(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def _manifest(root: Path) -> dict[str, dict[str, object]]:
    lines = (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return {entry["file"]: entry for entry in map(json.loads, lines)}


def _by_path(report: IngestReport) -> dict[str, FileOutcome]:
    return {f.path: f for f in report.files}


def test_shared_documents_are_all_ingested_then_skipped(
    catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    events: list[ProgressEvent] = []
    report = ingest(
        [DOCUMENTS, INDUSTRY],
        "regs",
        catalog=catalog,
        artifacts=artifacts,
        recursive=True,
        progress=events.append,
        sandbox=sandbox,
    )
    on_disk = _files_under(DOCUMENTS, INDUSTRY)
    assert len(report.files) == len(on_disk) == 30
    assert {f.source for f in report.files} == {str(p.resolve()) for p in on_disk}
    # Every real file, metadata files (SOURCE.md, manifest.jsonl) included, is just a file.
    assert report.counts == {"ingested": 30, "skipped": 0, "quarantined": 0}, [
        (f.path, f.reason) for f in report.files if f.status != "ingested"
    ]
    documents = {d.name: d for d in list_documents(catalog, "regs")}
    assert sorted(documents) == sorted(f"regs/{f.path}" for f in report.files)
    for root, prefix in ((DOCUMENTS, "documents"), (INDUSTRY, "docs")):
        for file, entry in _manifest(root).items():
            document = documents[f"regs/{prefix}/{file}"]
            assert document.sha256 == entry["sha256"]  # a peer's hash of the same bytes
            assert document.source_id == f"{prefix}/{file}"  # the file's own id: its path
            assert document.collection == "regs" and document.version == 1
            # The manifest calls the lorem-ipsum page English; it is Latin, so `other` is right.
            expected = "other" if "lorem ipsum" in document.text.lower() else entry["lang"]
            assert document.language == expected, file
            if entry.get("pages"):
                assert document.pages == entry["pages"]
                assert len(document.meta["page_starts"]) == entry["pages"]
            original = artifacts.read_bytes(document.meta["original"])
            assert original == (root / file).read_bytes()
            assert document.text.strip()
    pdf = documents["regs/documents/pdf/pdflatex-4-pages.pdf"]
    assert pdf.media_type == "application/pdf" and pdf.meta["file_type"] == "pdf"
    manifest = documents["regs/docs/manifest.jsonl"]
    assert len(manifest.meta["row_starts"]) == len(_manifest(INDUSTRY))
    # Progress: each file read → extract → store, the count only going up, to the end.
    stages = [e.stage for e in events if e.path == "documents/pdf/pdflatex-4-pages.pdf"]
    assert stages == ["read", "extract", "store"]
    assert [e.done for e in events] == sorted(e.done for e in events)
    assert events[-1].total == 30 and events[-1].done == 29

    again = ingest(
        [DOCUMENTS, INDUSTRY],
        "regs",
        catalog=catalog,
        artifacts=artifacts,
        recursive=True,
        sandbox=sandbox,
    )
    assert again.counts == {"ingested": 0, "skipped": 30, "quarantined": 0}
    assert {f.reason for f in again.files} == {"unchanged"}
    assert len(catalog.find("document")) == 30  # a no-op: nothing new written


def test_a_changed_file_becomes_version_2(
    tmp_path: Path, catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    shutil.copy(ZH_MD, folder / "rule.md")
    shutil.copy(EN_MD, folder / "other.md")
    first = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    assert first.counts["ingested"] == 2
    (folder / "rule.md").write_text("# 新标题\n\n第一条 燃气管道应当定期检查。\n", encoding="utf-8")
    second = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    outcomes = _by_path(second)
    assert outcomes["notes/rule.md"].status == "ingested"
    assert outcomes["notes/rule.md"].record == "c/notes/rule.md@2"
    assert outcomes["notes/other.md"].status == "skipped"
    versions = catalog.find("document", "c/notes/rule.md")
    assert [d.version for d in versions] == [2, 1]
    latest = {d.name: d for d in list_documents(catalog, "c")}["c/notes/rule.md"]
    assert latest.version == 2 and latest.title == "新标题" and "燃气管道" in latest.text
    assert latest.sha256 == hashlib.sha256((folder / "rule.md").read_bytes()).hexdigest()
    assert latest.source_id == "notes/rule.md"
    assert isinstance(versions[1], Document) and "上海市" in versions[1].text  # v1 is kept


def test_a_file_restored_after_quarantine_is_ingested_again(
    tmp_path: Path, catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    good = ZH_MD.read_bytes()
    (folder / "a.md").write_bytes(good)
    first = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    assert first.counts["ingested"] == 1
    (folder / "a.md").write_bytes(b"")
    broken = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    assert broken.counts["quarantined"] == 1 and len(list_quarantine(catalog, "c")) == 1
    (folder / "a.md").write_bytes(good)  # the same bytes as version 1
    restored = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    assert restored.counts["ingested"] == 1, restored.files  # not "skipped": it was quarantined
    assert list_quarantine(catalog, "c") == []
    assert [d.version for d in list_documents(catalog, "c")] == [2]


def _encrypted_pdf(password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(PDF))
    writer.encrypt(password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _zip_bomb(expanded_bytes: int) -> bytes:
    out = io.BytesIO()
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("zeros.txt", "w") as member,
    ):
        chunk = b"\0" * (1 << 20)
        for _ in range(expanded_bytes >> 20):
            member.write(chunk)
    return out.getvalue()


@pytest.fixture
def mixed_batch(tmp_path: Path) -> Path:
    """Good files and one of every bad input, side by side."""
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(ZH_MD, batch / "good.md")
    shutil.copy(DOCUMENTS / "docx" / "fake_table.docx", batch / "good.docx")
    (batch / "zero.txt").write_bytes(b"")
    (batch / "corrupt.pdf").write_bytes(PDF.read_bytes()[:5000])
    (batch / "encrypted.pdf").write_bytes(_encrypted_pdf("openpassword"))
    (batch / "oversize.txt").write_text("很大的文件。" * 30_000, encoding="utf-8")  # 540 KB
    (batch / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    slip = {"../../evil.txt": b"written outside?", "inner/ok.txt": "安全的内容".encode()}
    (batch / "slip.zip").write_bytes(_zip(slip))
    (batch / "bomb.zip").write_bytes(_zip_bomb(100 << 20))
    return batch


LIMITS = IngestLimits(max_file_bytes=300_000)
EXPECTED_PROBLEMS = {
    "batch/bomb.zip!zeros.txt": "compression ratio over 200:1",
    "batch/corrupt.pdf": "truncated",
    "batch/encrypted.pdf": "encrypted",
    "batch/image.png": "PNG image",
    "batch/oversize.txt": "over the 293 KiB per-file limit",
    "batch/slip.zip!../../evil.txt": "unsafe path",
    "batch/zero.txt": "empty (0 bytes)",
}


def test_mixed_batch_quarantines_each_bad_file_and_ingests_the_rest(
    tmp_path: Path,
    mixed_batch: Path,
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    sandbox: Sandbox,
) -> None:
    report = ingest(
        [mixed_batch], "mixed", catalog=catalog, artifacts=artifacts, limits=LIMITS, sandbox=sandbox
    )
    outcomes = _by_path(report)
    assert report.counts == {"ingested": 3, "skipped": 0, "quarantined": 7}
    ingested = sorted(path for path, f in outcomes.items() if f.status == "ingested")
    assert ingested == ["batch/good.docx", "batch/good.md", "batch/slip.zip!inner/ok.txt"]
    for path, words in EXPECTED_PROBLEMS.items():
        outcome = outcomes[path]
        assert outcome.status == "quarantined", path
        assert words in outcome.reason, (path, outcome.reason)
        assert outcome.fix, path
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path.parent / "evil.txt").exists()
    member = {d.name: d for d in list_documents(catalog, "mixed")}[
        "mixed/batch/slip.zip!inner/ok.txt"
    ]
    assert member.text.strip() == "安全的内容" and member.source.endswith("slip.zip!inner/ok.txt")
    records = {q.name: q for q in list_quarantine(catalog, "mixed")}
    assert sorted(records) == sorted(f"mixed/{path}" for path in EXPECTED_PROBLEMS)
    encrypted = records["mixed/batch/encrypted.pdf"]
    assert encrypted.file_type == "pdf" and "password" in encrypted.fix.lower()
    assert (
        encrypted.source_id
        == hashlib.sha256((mixed_batch / "encrypted.pdf").read_bytes()).hexdigest()
    )

    # The same batch again: nothing new to write, the same files still quarantined.
    again = ingest(
        [mixed_batch], "mixed", catalog=catalog, artifacts=artifacts, limits=LIMITS, sandbox=sandbox
    )
    assert again.counts == {"ingested": 0, "skipped": 3, "quarantined": 7}
    assert len(catalog.find("quarantine")) == 7

    # With the password the encrypted PDF goes in, and leaves the quarantine list.
    unlocked = ingest(
        [mixed_batch],
        "mixed",
        catalog=catalog,
        artifacts=artifacts,
        options=ParseOptions(password="openpassword"),
        limits=LIMITS,
        sandbox=sandbox,
    )
    assert unlocked.counts == {"ingested": 1, "skipped": 3, "quarantined": 6}
    pdf = {d.name: d for d in list_documents(catalog, "mixed")}["mixed/batch/encrypted.pdf"]
    assert pdf.pages == 4
    assert "mixed/batch/encrypted.pdf" not in {q.name for q in list_quarantine(catalog, "mixed")}
    assert len(list_quarantine(catalog, "mixed")) == 6


def test_quarantine_ends_when_the_same_name_is_ingested(
    tmp_path: Path, catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    (folder / "a.pdf").write_bytes(_encrypted_pdf("secret"))
    ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    assert [q.name for q in list_quarantine(catalog)] == ["c/inbox/a.pdf"]
    fixed = ingest(
        [folder],
        "c",
        catalog=catalog,
        artifacts=artifacts,
        options=ParseOptions(password="secret"),
        sandbox=sandbox,
    )
    assert fixed.counts["ingested"] == 1
    assert list_quarantine(catalog) == []
    assert isinstance(catalog.find("quarantine")[0], Quarantine)  # the history is kept
    assert list_collections(catalog) == ["c"]


def test_parser_crash_is_quarantined_with_the_traceback_logged(
    tmp_path: Path,
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    sandbox: Sandbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(PDF, folder / "a.pdf")
    shutil.copy(ZH_MD, folder / "b.md")
    broken = ParseOptions(max_pages="many")  # type: ignore[arg-type]  # the pdf parser trips on it
    for engine in (sandbox, Sandbox(workers=0)):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="feilun.data.ingest"):
            report = ingest(
                [folder],
                f"c{engine.workers}",
                catalog=catalog,
                artifacts=artifacts,
                options=broken,
                sandbox=engine,
            )
        outcomes = _by_path(report)
        assert outcomes["in/b.md"].status == "ingested"
        crashed = outcomes["in/a.pdf"]
        assert crashed.status == "quarantined"
        assert crashed.reason.startswith("parser crashed: TypeError")
        assert "bug in the pdf parser" in crashed.fix
        assert "Traceback" in caplog.text and "TypeError" in caplog.text


def test_walk_skips_hidden_files_and_os_litter_and_recurses_only_when_asked(
    tmp_path: Path,
) -> None:
    root = tmp_path / "share"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".git").mkdir()
    for name in (
        "a.md",
        ".hidden.md",
        ".DS_Store",
        "Thumbs.db",
        "~$draft.docx",
        "sub/b.md",
        "sub/deeper/c.md",
        ".git/config",
    ):
        (root / name).write_text("x", encoding="utf-8")
    found, notes = find_files([root], recursive=False)
    assert [rel for _, rel in found] == ["share/a.md"]
    assert len(notes) == 1 and "--recursive" in notes[0]
    found, notes = find_files([root, root / "sub" / "b.md"], recursive=True)
    assert [rel for _, rel in found] == [
        "share/a.md",
        "share/sub/b.md",
        "share/sub/deeper/c.md",
        "b.md",
    ]
    assert notes == []
    with pytest.raises(ConfigError, match="does not exist"):
        find_files([root / "missing"], recursive=False)


def test_same_name_twice_in_one_batch_is_quarantined(
    tmp_path: Path, catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.md").write_text(f"# {folder}\n", encoding="utf-8")
    report = ingest(
        [tmp_path / "x" / "same.md", tmp_path / "y" / "same.md"],
        "c",
        catalog=catalog,
        artifacts=artifacts,
        sandbox=sandbox,
    )
    assert [f.status for f in report.files] == ["ingested", "quarantined"]
    assert "same name" in report.files[1].reason
    [document] = list_documents(catalog, "c")
    assert document.title == "x"


def test_bad_collection_name_is_refused(catalog: SqlCatalog, artifacts: ArtifactStore) -> None:
    for name in ("", "a/b", "../x", " x"):
        with pytest.raises(ConfigError, match="collection name"):
            ingest([ZH_MD], name, catalog=catalog, artifacts=artifacts)


def test_detect_language() -> None:
    assert detect_language(ZH_MD.read_text(encoding="utf-8")) == "zh"
    assert detect_language(EN_MD.read_text(encoding="utf-8")) == "en"
    assert (
        detect_language("第一条 城镇燃气管道的安全 pipeline safety rules for gas operators")
        == "mixed"
    )
    assert detect_language("Закон о промышленной безопасности опасных объектов") == "other"
    assert detect_language("") == "other"
    assert detect_language("12345 67.8") == "other"


KILLED_INGEST = """
import os, signal, sys
from pathlib import Path
import sqlalchemy as sa
from feilun.data.ingest import ingest
from feilun.data.sandbox import Sandbox
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import open_database

database = open_database(sys.argv[1])
inserts = []

@sa.event.listens_for(database.engine, "after_cursor_execute")
def _die_mid_transaction(conn, cursor, statement, parameters, context, executemany):
    if statement.startswith("INSERT INTO records"):
        inserts.append(statement)
        if len(inserts) == 3:  # the third record is inserted but never committed
            os.kill(os.getpid(), signal.SIGKILL)

ingest([Path(sys.argv[2])], "c", catalog=SqlCatalog(database),
       artifacts=ArtifactStore(Path(sys.argv[3])), sandbox=Sandbox(workers=0))
"""


def test_a_kill_mid_ingest_leaves_only_whole_records(
    tmp_path: Path, catalog: SqlCatalog, artifacts: ArtifactStore
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.md").write_text(f"# Title {i}\n\nBody {i}.\n", encoding="utf-8")
    script = tmp_path / "killed_ingest.py"
    script.write_text(textwrap.dedent(KILLED_INGEST), encoding="utf-8")
    url = str(catalog.db.url)
    result = subprocess.run(
        [sys.executable, str(script), url, str(folder), str(artifacts.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == -9, result.stderr
    saved = sorted(d.name for d in catalog.find("document"))
    assert saved == ["c/docs/0.md", "c/docs/1.md"]  # the third never committed
    for document in catalog.find("document"):
        assert artifacts.read_bytes(document.meta["original"])  # verified against its digest
    report = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=Sandbox(workers=0))
    assert report.counts == {"ingested": 3, "skipped": 2, "quarantined": 0}
    assert len(list_documents(catalog, "c")) == 5


def test_documents_keep_the_ids_their_source_gives_them(
    catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    corpus = SHARED / "cmrc2018-retrieval" / "corpus.jsonl"
    cmmlu = SHARED / "cmmlu" / "original" / "dev" / "marketing.csv"
    report = ingest(
        [corpus, cmmlu, ZH_MD], "ids", catalog=catalog, artifacts=artifacts, sandbox=sandbox
    )
    assert report.counts["ingested"] == 3
    documents = {d.source_id: d for d in list_documents(catalog, "ids")}
    assert sorted(documents) == sorted(p.name for p in (corpus, cmmlu, ZH_MD))  # the paths
    for path in (corpus, cmmlu, ZH_MD):
        assert documents[path.name].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    own_ids = [json.loads(line)["_id"] for line in corpus.read_text("utf-8").splitlines()]
    assert documents["corpus.jsonl"].meta["row_ids"] == own_ids
    items = items_from_documents(documents.values())
    by_document: dict[str, list[str]] = {}
    for item in items:  # Feilun's own id and the source's, side by side
        by_document.setdefault(item.meta["document_id"], []).append(item.meta["source_id"])
    assert by_document[documents["corpus.jsonl"].id] == own_ids
    rows = by_document[documents["marketing.csv"].id]  # no id column: the path and row number
    assert rows[:2] == ["marketing.csv#1", "marketing.csv#2"] and len(rows) == 5
    assert by_document[documents[ZH_MD.name].id] == [ZH_MD.name]


def test_documents_stored_before_sha256_existed_still_load_and_skip(
    tmp_path: Path, catalog: SqlCatalog, artifacts: ArtifactStore, sandbox: Sandbox
) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    shutil.copy(ZH_MD, folder / "rule.md")
    ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    digest = hashlib.sha256((folder / "rule.md").read_bytes()).hexdigest()
    # The row as an older Feilun wrote it: no `sha256` field, the digest in `source_id`.
    with catalog.db.session() as session:
        row = session.execute(sa.select(records.c.id, records.c.data)).one()
        legacy = {k: v for k, v in row.data.items() if k != "sha256"} | {"source_id": digest}
        session.execute(sa.update(records).where(records.c.id == row.id).values(data=legacy))
    (old,) = list_documents(catalog, "c")
    assert (old.sha256, old.source_id) == ("", digest)
    assert original_sha256(old) == digest and document_source_id(old) == "old/rule.md"
    assert items_from_documents([old])[0].meta["source_id"] == "old/rule.md"
    again = ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    assert again.counts == {"ingested": 0, "skipped": 1, "quarantined": 0}
    (folder / "rule.md").write_text("# 新标题\n\n第一条 燃气管道应当定期检查。\n", encoding="utf-8")
    ingest([folder], "c", catalog=catalog, artifacts=artifacts, sandbox=sandbox)
    (new,) = list_documents(catalog, "c")
    assert (new.version, new.source_id, document_source_id(new)) == (
        2,
        "old/rule.md",
        "old/rule.md",
    )
