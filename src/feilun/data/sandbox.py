"""Parse one file in a worker process, with caps on wall time, memory and output size.

A parser that hangs, runs out of memory or crashes costs one file (a `BadInput`), never the
batch: that worker is killed and replaced. Workers are spawned once and reused across files;
requests and results cross the process boundary as plain data (bytes, dicts, strings).
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from feilun.core import errors
from feilun.core.errors import BackendUnavailable, BadInput, FeilunError
from feilun.data.parsing import Parsed, ParseOptions, parser_for

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MEMORY_BYTES = 2 << 30
DEFAULT_MAX_OUTPUT_CHARS = 100_000_000
DEFAULT_WORKERS = 2
FILES_PER_WORKER = 50  # Sandbox.for_files: batch size from which one more worker starts
# A worker that hits MemoryError exits with this code: its heap may be in any state after one.
_MEMORY_EXIT = 86
_STOP_WAIT_S = 5.0
# Parsers import their libraries on first use; a fresh worker's first file may take that long
# on top of the cap, so a low --max-seconds does not fail files for the worker's start-up.
_FIRST_PARSE_GRACE_S = 10.0
_PARSED_FIELDS = frozenset(f.name for f in dataclasses.fields(Parsed))


@dataclass(frozen=True)
class SandboxLimits:
    """What one file may cost: wall time, address space of its worker, characters of text."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS


class ParserCrashed(Exception):
    """A parser raised something other than a FeilunError: a bug in that parser."""

    def __init__(self, summary: str, details: str) -> None:
        self.summary = summary  # "ValueError: …", one line
        self.details = details  # the worker's traceback
        super().__init__(summary)


def format_bytes(size_bytes: int) -> str:
    """`2 GiB`, `300 MiB`, `12 KiB`: a size people read at a glance."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size_bytes >= 1 << shift:
            return f"{size_bytes / (1 << shift):.4g} {unit}"
    return f"{size_bytes} bytes"


@dataclass(eq=False)  # identity: two workers are never "equal"
class _Worker:
    process: BaseProcess
    conn: Connection
    is_fresh: bool = True
    # `close()` and the worker's own parse thread may both stop a busy worker at once.
    stopping: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class Sandbox:
    """A small pool of long-lived parse workers; `workers=0` parses in this process, uncapped.

    `parse` is thread-safe: up to `workers` files are parsed at once, each in its own process.
    """

    def __init__(self, limits: SandboxLimits | None = None, workers: int = DEFAULT_WORKERS) -> None:
        self.limits = limits or SandboxLimits()
        self.workers = workers
        self._idle: queue.Queue[_Worker | None] = queue.Queue()
        self._started: list[_Worker] = []  # every worker ever started, busy or idle
        self._lock = threading.Lock()
        for _ in range(workers):
            self._idle.put(None)  # started on first use, so a batch of skips spawns nothing

    @classmethod
    def for_files(cls, file_count: int, limits: SandboxLimits | None = None) -> Sandbox:
        """A sandbox sized for a batch of `file_count` files.

        A worker costs ~0.5 s to start (its parsers' imports), so a second one pays off only
        on larger batches, and only with a second CPU.
        """
        workers = min(DEFAULT_WORKERS, os.cpu_count() or 1, 1 + file_count // FILES_PER_WORKER)
        return cls(limits, workers)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def parse(self, file_type: str, data: bytes, name: str, options: ParseOptions) -> Parsed:
        """Text of one file by the parser registered for `file_type`, within the limits.

        BadInput for a bad file, a cap exceeded or a dead worker; ParserCrashed for a bug;
        BackendUnavailable when no worker process can start at all.
        """
        if self.workers == 0:
            return _checked(parser_for(file_type).parse(data, name, options), name, self.limits)
        worker = self._idle.get()
        try:
            if worker is not None and not worker.process.is_alive():
                _stop(worker)  # died while idle (killed from outside)
                worker = None
            if worker is None:
                worker = self._start()
            reply = self._ask(worker, (file_type, data, name, dataclasses.asdict(options)), name)
        except BaseException:
            if worker is not None and worker.process.is_alive():
                _stop(worker)
            worker = None
            raise
        finally:
            self._idle.put(worker)
        return _answer(reply, name, self.limits)

    def pids(self) -> list[int]:
        """Process ids of the running workers."""
        with self._lock:
            alive = [w.process.pid for w in self._started if w.process.is_alive()]
        return [pid for pid in alive if pid is not None]

    def close(self) -> None:
        """Stop every worker, busy ones too: a parse still running gets BadInput."""
        taken: list[_Worker | None] = []
        for _ in range(self.workers):
            try:
                taken.append(self._idle.get_nowait())
            except queue.Empty:
                break
        idle = [worker for worker in taken if worker is not None]
        with self._lock:
            started, self._started = self._started, []
        for worker in idle:
            _stop(worker, is_polite=True)
        for worker in started:
            if worker not in idle:
                _stop(worker)  # busy: its parse thread sees the pipe close and gives BadInput
        for _ in taken:
            self._idle.put(None)  # the slots stay: a closed sandbox starts workers again

    def _start(self) -> _Worker:
        # spawn, not fork: forking a process that runs threads (progress bars, DB pools) can
        # copy a held lock into the child and deadlock it.
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve,
            args=(theirs, self.limits.memory_bytes, self.limits.max_output_chars),
            name="feilun-parse",
            daemon=True,
        )
        process.start()
        theirs.close()
        logger.debug("started parse worker %s", process.pid)
        worker = _Worker(process, ours)
        with self._lock:
            self._started = [w for w in self._started if w.process.is_alive()] + [worker]
        return worker

    def _ask(self, worker: _Worker, request: tuple[Any, ...], name: str) -> tuple[Any, ...]:
        started = time.monotonic()
        try:
            worker.conn.send(request)
            grace = _FIRST_PARSE_GRACE_S if worker.is_fresh else 0.0
            if not worker.conn.poll(self.limits.timeout_s + grace):
                _stop(worker)
                raise BadInput(
                    f"{name}: extracting its text took longer than "
                    f"{self.limits.timeout_s:g} s (the per-file time cap); the parse was stopped",
                    "raise the cap with --max-seconds, or split the file into smaller ones",
                )
            reply: tuple[Any, ...] = worker.conn.recv()
            worker.is_fresh = False
        except (EOFError, OSError):
            raise _death(worker, name, self.limits) from None
        logger.debug("parsed %s in %.3f s", name, time.monotonic() - started)
        return reply


def _death(worker: _Worker, name: str, limits: SandboxLimits) -> FeilunError:
    worker.process.join(_STOP_WAIT_S)
    code = worker.process.exitcode
    _stop(worker)
    if worker.is_fresh and code is not None and 0 < code != _MEMORY_EXIT:
        return BackendUnavailable(  # not the file's fault: no file could be parsed
            f"the parse worker process could not start (exit code {code}; its error is above)",
            "run Feilun from a script file or the `feilun` command (a script read from stdin "
            "cannot start worker processes), or parse in-process with Sandbox(workers=0)",
        )
    if code == _MEMORY_EXIT:
        return BadInput(
            f"{name}: extracting its text needed more than {format_bytes(limits.memory_bytes)} "
            "of memory (the per-file memory cap); the parse was stopped",
            "split the file into smaller ones, or raise the cap with --max-memory-mb",
        )
    if code is not None and code < 0:
        what = f"crashed ({signal.Signals(-code).name})"
        if -code == signal.SIGKILL:
            what = "was killed by SIGKILL (the system may be out of memory)"
        return BadInput(
            f"{name}: the parser process {what}",
            "re-save or convert the file (e.g. print it to a new PDF) and ingest it again; "
            "if it keeps happening, report the file as a parser bug",
        )
    return BadInput(
        f"{name}: the parser process exited unexpectedly (exit code {code})",
        "ingest the file again; if it keeps happening, report the file as a parser bug",
    )


def _stop(worker: _Worker, is_polite: bool = False) -> None:
    with worker.stopping:
        if worker.conn.closed:
            return  # already stopped by another thread
        if is_polite and worker.process.is_alive():
            try:
                worker.conn.send(None)
                worker.process.join(_STOP_WAIT_S)
            except OSError:
                pass
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(_STOP_WAIT_S)
        worker.conn.close()
    logger.debug("stopped parse worker %s", worker.process.pid)


def _answer(reply: tuple[Any, ...], name: str, limits: SandboxLimits) -> Parsed:
    status = reply[0]
    if status == "ok":
        return Parsed(**{k: v for k, v in reply[1].items() if k in _PARSED_FIELDS})
    if status == "error":
        _, class_name, message, fix = reply
        error_class = getattr(errors, class_name, FeilunError)
        if not (isinstance(error_class, type) and issubclass(error_class, FeilunError)):
            error_class = FeilunError
        raise error_class(message, fix)
    if status == "too_big":
        raise _too_big(name, reply[1], limits)
    raise ParserCrashed(reply[1], reply[2])


def _too_big(name: str, chars: int, limits: SandboxLimits) -> BadInput:
    return BadInput(
        f"{name}: its extracted text has {chars:,} characters, over the per-file cap of "
        f"{limits.max_output_chars:,}",
        "split the file into smaller ones",
    )


def _checked(parsed: Parsed, name: str, limits: SandboxLimits) -> Parsed:
    if len(parsed.text) > limits.max_output_chars:
        raise _too_big(name, len(parsed.text), limits)
    return parsed


# --- in the worker process ---


def _serve(conn: Connection, memory_bytes: int, max_output_chars: int) -> None:
    """Worker loop: parse requests until told to stop (None) or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    _limit_memory(memory_bytes)
    limits = SandboxLimits(memory_bytes=memory_bytes, max_output_chars=max_output_chars)
    try:
        while (request := conn.recv()) is not None:
            conn.send(_handle(request, limits))
    except EOFError:
        return
    except MemoryError:
        os._exit(_MEMORY_EXIT)


def _limit_memory(memory_bytes: int) -> None:
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the time cap still holds
        logger.warning("cannot cap parser memory on this platform")
        return
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory_bytes = min(memory_bytes, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, hard))
    except (ValueError, OSError) as e:  # macOS refuses RLIMIT_AS; the time cap still holds
        logger.warning("cannot cap parser memory on this platform: %s", e)


def _handle(request: tuple[Any, ...], limits: SandboxLimits) -> tuple[Any, ...]:
    file_type, data, name, options = request
    try:
        parsed = parser_for(file_type).parse(data, name, ParseOptions(**options))
    except MemoryError:
        raise
    except FeilunError as e:
        if _is_out_of_memory(e):
            raise MemoryError from e
        return ("error", type(e).__name__, e.message, e.fix)
    except Exception as e:
        if _is_out_of_memory(e):
            raise MemoryError from e
        return ("crash", f"{type(e).__name__}: {e}"[:500], traceback.format_exc())
    if len(parsed.text) > limits.max_output_chars:
        return ("too_big", len(parsed.text))
    return ("ok", dataclasses.asdict(parsed))


def _is_out_of_memory(error: BaseException) -> bool:
    """Whether a MemoryError hides behind a parser's own error (`raise BadInput(…) from e`)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, MemoryError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
