"""`ingest`: files → Document records (extracted text + original bytes); bad files → Quarantine.

Per file: read, sha256, skip when unchanged, sniff, expand ZIPs, parse in the sandbox, tag the
language, store. Each file is one catalog transaction (its bytes are stored first, content-
addressed), so a crash leaves only whole records; a bad file is quarantined and the batch goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from feilun.core.errors import BadInput, ConfigError, FeilunError, PluginError
from feilun.core.records import Document, Quarantine
from feilun.data.archives import ArchiveLimits, expand_zip
from feilun.data.collections import original_sha256
from feilun.data.operators.language import Language
from feilun.data.parsing import Parsed, ParseOptions
from feilun.data.sandbox import ParserCrashed, Sandbox, SandboxLimits, format_bytes
from feilun.data.sniff import sniff_type
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog

logger = logging.getLogger(__name__)

DEFAULT_MAX_FILE_BYTES = 100 << 20
# Operating-system litter, never a document: macOS, Windows Explorer, Office lock files.
JUNK_NAMES = frozenset({".DS_Store", "Thumbs.db", "ehthumbs.db", "desktop.ini", "__MACOSX"})
_COLLECTION = re.compile(r"\w[\w.-]*")
_LANGUAGE = Language()
_CRASH_FIX = (
    "a bug in the {} parser (the log has the traceback): report it with the file; meanwhile "
    "convert the file (e.g. re-save it) and ingest it again"
)


@dataclass(frozen=True)
class IngestLimits:
    """Caps per file: bytes on disk, the sandbox's time/memory/output, ZIP expansion."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)


@dataclass(frozen=True)
class ProgressEvent:
    """Where the batch is: `done` of `total` files, and the stage of the file `path`."""

    done: int
    total: int  # grows when an archive is opened: each member counts as a file
    path: str
    stage: str  # "read", "extract" or "store"


Progress = Callable[[ProgressEvent], None]


@dataclass
class FileOutcome:
    """What happened to one file (or archive member)."""

    path: str  # as named in the collection: `docs/a.pdf`, `docs/x.zip!inner/b.txt`
    source: str  # absolute path it was read from
    status: str  # "ingested", "skipped" or "quarantined"
    file_type: str = ""
    reason: str = ""  # skipped: why; quarantined: the problem
    fix: str = ""
    record: str = ""  # the Document or Quarantine ref (`name@version`) written or found


@dataclass
class IngestReport:
    """Per-file outcomes of one `ingest` call, in the order the files were found."""

    collection: str
    files: list[FileOutcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the user may want to know
    seconds: float = 0.0

    @property
    def counts(self) -> dict[str, int]:
        """Files per status: ingested, skipped, quarantined."""
        statuses = ("ingested", "skipped", "quarantined")
        return {status: sum(f.status == status for f in self.files) for status in statuses}


@dataclass(eq=False)
class _Job:
    rel: str
    source: str
    data: bytes = b""
    sha256: str = ""
    file_type: str = ""
    problem: FeilunError | None = None
    is_unchanged: bool = False
    parsed: Future[Parsed] | None = None


def ingest(
    paths: Sequence[Path],
    collection: str,
    *,
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    recursive: bool = False,
    options: ParseOptions | None = None,
    limits: IngestLimits | None = None,
    progress: Progress | None = None,
    sandbox: Sandbox | None = None,
) -> IngestReport:
    """Ingest files and folders into `collection`; never stops on a bad file.

    Documents are named `<collection>/<path>`, where path keeps a folder argument's own name
    (`docs/a.pdf` for `ingest(["docs"])`). `sandbox` defaults to a fresh one for this batch.
    """
    started = time.monotonic()
    if not _COLLECTION.fullmatch(collection):
        raise ConfigError(
            f"collection name {collection!r} is not valid",
            "use letters, digits, '_', '-' or '.', starting with a letter or digit",
        )
    found, notes = find_files(paths, recursive)
    run = _Run(collection, catalog, artifacts, options or ParseOptions(), limits or IngestLimits())
    run.progress, run.total = progress, len(found)
    owned = sandbox is None
    sandbox = sandbox or Sandbox.for_files(len(found), run.limits.sandbox)
    # Reading, hashing and storing happen here, in order; parsing overlaps in the workers.
    pool, opts = ThreadPoolExecutor(max(1, sandbox.workers), "feilun-ingest"), run.options
    pending: deque[_Job] = deque()
    try:
        for path, rel in found:
            for job in run.prepare(path, rel):
                if job.problem is None and not job.is_unchanged:
                    job.parsed = pool.submit(sandbox.parse, job.file_type, job.data, job.rel, opts)
                pending.append(job)
            while len(pending) > 2 * sandbox.workers:
                run.finish(pending.popleft())
        while pending:
            run.finish(pending.popleft())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        if owned:
            sandbox.close()  # also ends parses still running after an error or Ctrl-C
    report = IngestReport(collection, run.outcomes, notes, time.monotonic() - started)
    logger.info("ingest into %s: %s in %.1f s", collection, report.counts, report.seconds)
    return report


def find_files(paths: Iterable[Path], recursive: bool) -> tuple[list[tuple[Path, str]], list[str]]:
    """(path, name in the collection) of each file under `paths`, hidden ones left out; notes."""
    found: list[tuple[Path, str]] = []
    notes: list[str] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"{path} does not exist", "check the path (and its quoting)")
        if not path.is_dir():
            found.append((path, path.name))
            continue
        root_name = path.resolve().name
        for folder, dirs, files in os.walk(path):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not _is_hidden(d))
            if not recursive and dirs:
                notes.append(f"left out {len(dirs)} folder(s) in {here}: pass --recursive")
                dirs.clear()
            for name in sorted(files):
                if not _is_hidden(name):
                    rel = (here / name).relative_to(path).as_posix()
                    found.append((here / name, f"{root_name}/{rel}"))
    return found, notes


def _is_hidden(name: str) -> bool:
    return name.startswith((".", "~$")) or name in JUNK_NAMES


def detect_language(text: str) -> str:
    """`zh`, `en`, `mixed` or `other`: the `language` operator's verdict on the first 200k chars."""
    return _LANGUAGE.identify(text[:200_000])


@dataclass
class _Run:
    """The state of one batch: what exists already, what was done so far."""

    collection: str
    catalog: SqlCatalog
    artifacts: ArtifactStore
    options: ParseOptions
    limits: IngestLimits
    progress: Progress | None = None
    total: int = 0  # files known so far
    outcomes: list[FileOutcome] = field(default_factory=list)
    documents: dict[str, Document] = field(default_factory=dict)  # latest version per name
    quarantined: dict[str, Quarantine] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)  # names met in this batch

    def __post_init__(self) -> None:
        prefix = f"{self.collection}/"
        for record in self.catalog.latest(Document.kind, name_prefix=prefix):
            self.documents[record.name] = cast(Document, record)
        for record in self.catalog.latest(Quarantine.kind, name_prefix=prefix):
            self.quarantined[record.name] = cast(Quarantine, record)

    def prepare(self, path: Path, rel: str) -> list[_Job]:
        """Read one file and decide what to do with it (ZIP: with each member)."""
        self._tell(rel, "read")
        try:
            data = _read(path, rel, self.limits.max_file_bytes)
        except BadInput as e:
            return [_Job(rel, str(path.resolve()), problem=e)]
        return self._jobs(rel, str(path.resolve()), data)

    def finish(self, job: _Job) -> None:
        """Wait for the job's text and store it as a Document, or quarantine the file."""
        if job.is_unchanged:
            previous = self.documents[self._name(job)]
            self._done(job, "skipped", "unchanged", ref=previous.ref)
            return
        parsed = None
        if job.parsed is not None:
            self._tell(job.rel, "extract")
            try:
                parsed = job.parsed.result()
            except (BadInput, PluginError) as e:  # other FeilunErrors stop the batch
                job.problem = e
            except Exception as e:  # a bug in the parser, not the file's fault
                crash = e if isinstance(e, ParserCrashed) else None  # from a worker, or here
                summary = crash.summary if crash else f"{type(e).__name__}: {e}"
                trace = crash.details if crash else traceback.format_exc()
                logger.error("%s parser crashed on %s:\n%s", job.file_type, job.rel, trace)
                fix = _CRASH_FIX.format(job.file_type)
                job.problem = BadInput(f"parser crashed: {summary}", fix)
        self._tell(job.rel, "store")
        if parsed is not None:
            self._store(job, parsed)
        else:
            self._quarantine(job, job.problem or BadInput(f"{job.rel}: nothing extracted"))

    def _jobs(self, rel: str, source: str, data: bytes, is_member: bool = False) -> list[_Job]:
        job = _Job(rel, source, data, hashlib.sha256(data).hexdigest())
        name = self._name(job)
        previous = self.documents.get(name)
        if name in self.seen:
            job.problem = BadInput(
                f"{rel} has the same name as a file ingested earlier in this batch",
                "ingest one of them into another collection, or rename it",
            )
        elif not data:
            job.problem = BadInput(f"{rel} is empty (0 bytes)", "copy or export it again")
        elif len(data) > self.limits.max_file_bytes:
            job.problem = _too_big(rel, len(data), self.limits.max_file_bytes)
        elif previous and original_sha256(previous) == job.sha256 and self._is_current(name):
            job.is_unchanged = True
        else:
            try:
                job.file_type = sniff_type(rel, data)
            except BadInput as e:
                job.problem = e
        self.seen.add(name)
        if job.file_type == "zip" and is_member:  # expand_zip already opened nested ones
            job.problem = BadInput(f"{rel} is an archive nested too deep", "unzip it first")
        elif job.file_type == "zip":
            return self._members(job)
        return [job]

    def _members(self, archive: _Job) -> list[_Job]:
        try:
            members = expand_zip(archive.data, archive.rel, self.limits.archive)
        except BadInput as e:
            archive.problem = e
            return [archive]
        members = [  # problems are always reported: `..` starts with a dot but is not hidden
            m for m in members if m.problem or not any(map(_is_hidden, m.path.split("/")))
        ]
        if not members:
            archive.problem = BadInput(f"{archive.rel} is an archive with no files", "check it")
            return [archive]
        self.total += len(members) - 1
        jobs = []
        for member in members:
            rel, source = f"{archive.rel}!{member.path}", f"{archive.source}!{member.path}"
            if member.problem is not None or member.data is None:
                jobs.append(_Job(rel, source, problem=member.problem or BadInput(rel)))
            else:
                jobs.extend(self._jobs(rel, source, member.data, is_member=True))
        return jobs

    def _store(self, job: _Job, parsed: Parsed) -> None:
        original = self.artifacts.put_bytes(job.data)  # before the record: never a dangling ref
        name = self._name(job)
        previous = self.documents.get(name)
        document = Document(
            name=name,
            version=previous.version + 1 if previous else 1,
            collection=self.collection,
            source=job.source,
            source_id=job.rel,  # the file's path as ingested: its own id
            sha256=job.sha256,
            media_type=parsed.media_type,
            language=detect_language(parsed.text),
            title=parsed.title,
            pages=parsed.pages,
            text=parsed.text,
            warnings=parsed.warnings,
            meta={
                "original": original,
                "file_type": job.file_type,
                "size_bytes": len(job.data),
                "page_starts": parsed.page_starts,
                "row_starts": parsed.row_starts,
                "row_ids": parsed.row_ids,
                "encoding": parsed.encoding,
            },
        )
        self.catalog.save(document)
        self.documents[name] = document
        self._done(job, "ingested", ref=document.ref)

    def _quarantine(self, job: _Job, problem: FeilunError) -> None:
        name = self._name(job)
        previous = self.quarantined.get(name)
        reason, fix = problem.message, problem.fix or ""
        if previous and (previous.source_id, previous.reason) == (job.sha256, reason):
            record = previous  # already quarantined for this reason: nothing new to write
        else:
            record = Quarantine(
                name=name,
                version=previous.version + 1 if previous else 1,
                collection=self.collection,
                source=job.source,
                source_id=job.sha256,
                file_type=job.file_type,
                reason=reason,
                fix=fix,
            )
            self.catalog.save(record)
            self.quarantined[name] = record
        logger.info("quarantined %s: %s", job.rel, reason)  # reported, not a surprise
        self._done(job, "quarantined", reason, fix, record.ref)

    def _done(self, job: _Job, status: str, why: str = "", fix: str = "", ref: str = "") -> None:
        self.outcomes.append(FileOutcome(job.rel, job.source, status, job.file_type, why, fix, ref))

    def _is_current(self, name: str) -> bool:
        """Whether the latest word on `name` is its Document, not a newer quarantine."""
        record, document = self.quarantined.get(name), self.documents.get(name)
        return record is None or (document is not None and record.created_at <= document.created_at)

    def _name(self, job: _Job) -> str:
        return f"{self.collection}/{job.rel}"

    def _tell(self, rel: str, stage: str) -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(len(self.outcomes), self.total, rel, stage))


def _read(path: Path, rel: str, max_bytes: int) -> bytes:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(f"{rel} is not a regular file", "point at files or folders only")
        if info.st_size > max_bytes:
            raise _too_big(rel, info.st_size, max_bytes)
        with path.open("rb") as f:
            return f.read(max_bytes + 1)
    except OSError as e:
        raise BadInput(f"{rel} cannot be read: {e.strerror}", "check its permissions") from e


def _too_big(rel: str, size: int, max_bytes: int) -> BadInput:
    return BadInput(
        f"{rel} is {format_bytes(size)}, over the {format_bytes(max_bytes)} per-file limit",
        "raise the limit with --max-file-mb, or split the file into smaller ones",
    )
