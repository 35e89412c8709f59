"""The parse sandbox: real worker processes, real caps (time, memory, output), real kills."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from feilun.core.errors import BadInput, PluginError
from feilun.data.parsing import ParseOptions, parser_for
from feilun.data.sandbox import ParserCrashed, Sandbox, SandboxLimits, format_bytes

DOCUMENTS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "documents"
OPTIONS = ParseOptions()


def _pdf_with_content(content: bytes) -> bytes:
    """A one-page PDF (Helvetica as F1) whose page content stream is `content`."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    fonts = DictionaryObject({NameObject("/F1"): writer._add_object(font)})
    page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): fonts})
    stream = DecodedStreamObject()
    stream.set_data(content)
    page[NameObject("/Contents")] = writer._add_object(stream.flate_encode())
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def minimal_pdf() -> bytes:
    return (DOCUMENTS / "pdf" / "minimal-document.pdf").read_bytes()


@pytest.fixture(scope="module")
def slow_pdf() -> bytes:
    """3 KB that take pypdf seconds: 100,000 text-showing operators on one page."""
    return _pdf_with_content(b"BT /F1 12 Tf 72 700 Td " + b"(word ) Tj\n" * 100_000 + b"ET")


@pytest.fixture(scope="module")
def greedy_pdf() -> bytes:
    """20 KB whose one string decompresses to 20 MB, which pypdf holds several times over."""
    return _pdf_with_content(b"BT /F1 12 Tf 72 700 Td (" + b"a" * 20_000_000 + b") Tj ET")


def test_worker_gives_what_the_parser_gives_in_process(minimal_pdf: bytes) -> None:
    expected = parser_for("pdf").parse(minimal_pdf, "m.pdf", OPTIONS)
    with Sandbox(workers=1) as sandbox:
        assert sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS) == expected
    assert Sandbox(workers=0).parse("pdf", minimal_pdf, "m.pdf", OPTIONS) == expected
    assert "Lorem ipsum" in expected.text and expected.pages == 1


def test_workers_are_reused_and_bad_input_keeps_them(minimal_pdf: bytes) -> None:
    with Sandbox(workers=1) as sandbox:
        assert sandbox.pids() == []  # started on first use only
        sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS)
        [pid] = sandbox.pids()
        with pytest.raises(BadInput, match="not a PDF") as info:
            sandbox.parse("pdf", b"<html>not a pdf</html>", "fake.pdf", OPTIONS)
        assert info.value.fix  # message and fix cross the process boundary
        with pytest.raises(PluginError, match="unknown parser 'nope'"):
            sandbox.parse("nope", minimal_pdf, "m.nope", OPTIONS)
        sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS)
        assert sandbox.pids() == [pid]
    assert sandbox.pids() == []
    assert not _alive(pid)


def test_time_cap_stops_a_slow_parse_and_replaces_the_worker(
    minimal_pdf: bytes, slow_pdf: bytes
) -> None:
    with Sandbox(SandboxLimits(timeout_s=1.0), workers=1) as sandbox:
        sandbox.parse("pdf", minimal_pdf, "warm.pdf", OPTIONS)
        [first] = sandbox.pids()
        started = time.monotonic()
        with pytest.raises(BadInput, match=r"slow\.pdf: .*took longer than 1 s") as info:
            sandbox.parse("pdf", slow_pdf, "slow.pdf", OPTIONS)
        assert time.monotonic() - started < 2.5  # uncapped, this parse takes ~4 s
        assert "--max-seconds" in (info.value.fix or "")
        assert not _alive(first)
        assert "Lorem ipsum" in sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS).text
        assert sandbox.pids() != [first]


def test_a_fresh_workers_start_up_does_not_count_against_the_time_cap(slow_pdf: bytes) -> None:
    html = (DOCUMENTS / "zh" / "shanghai-smoking-control-regulation.html").read_bytes()
    with Sandbox(SandboxLimits(timeout_s=0.01), workers=1) as sandbox:
        # The first file imports the HTML parser's libraries (~0.5 s), far over 0.01 s.
        assert "吸烟" in sandbox.parse("html", html, "a.html", OPTIONS).text
        with pytest.raises(BadInput, match="took longer than 0.01 s"):
            sandbox.parse("pdf", slow_pdf, "slow.pdf", OPTIONS)


def test_memory_cap_stops_a_greedy_parse_and_replaces_the_worker(
    minimal_pdf: bytes, greedy_pdf: bytes
) -> None:
    with Sandbox(SandboxLimits(memory_bytes=150 << 20), workers=1) as sandbox:
        with pytest.raises(BadInput, match=r"greedy\.pdf: .*needed more than 150 MiB") as info:
            sandbox.parse("pdf", greedy_pdf, "greedy.pdf", OPTIONS)
        assert "split the file" in (info.value.fix or "")
        assert "Lorem ipsum" in sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS).text


@pytest.mark.slow
def test_greedy_parse_fits_without_the_low_cap(greedy_pdf: bytes) -> None:
    # The control for the test above (~12 s): the same file parses under the default 2 GiB cap.
    with Sandbox(workers=1) as sandbox:
        assert len(sandbox.parse("pdf", greedy_pdf, "greedy.pdf", OPTIONS).text) == 20_000_000


def test_output_cap(minimal_pdf: bytes) -> None:
    limits = SandboxLimits(max_output_chars=100)
    for workers in (1, 0):
        with (
            Sandbox(limits, workers=workers) as sandbox,
            pytest.raises(BadInput, match=r"595 characters, over the per-file cap of 100"),
        ):
            sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS)


def test_a_killed_worker_costs_one_file(minimal_pdf: bytes, slow_pdf: bytes) -> None:
    with Sandbox(workers=1) as sandbox:
        sandbox.parse("pdf", minimal_pdf, "warm.pdf", OPTIONS)
        [pid] = sandbox.pids()
        killer = threading.Timer(0.3, os.kill, (pid, signal.SIGKILL))
        killer.start()
        with pytest.raises(BadInput, match=r"slow\.pdf: the parser process was killed by SIGKILL"):
            sandbox.parse("pdf", slow_pdf, "slow.pdf", OPTIONS)
        killer.join()
        assert "Lorem ipsum" in sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS).text


def test_parser_bug_is_a_crash_with_the_workers_traceback(minimal_pdf: bytes) -> None:
    broken = ParseOptions(max_pages="many")  # type: ignore[arg-type]
    with Sandbox(workers=1) as sandbox:
        with pytest.raises(ParserCrashed) as info:
            sandbox.parse("pdf", minimal_pdf, "m.pdf", broken)
        assert info.value.summary.startswith("TypeError")
        assert "Traceback" in info.value.details and "pdf.py" in info.value.details
        assert "Lorem ipsum" in sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS).text


def test_close_stops_a_busy_worker(slow_pdf: bytes) -> None:
    sandbox = Sandbox(workers=1)
    errors: list[BaseException] = []

    def parse() -> None:
        try:
            sandbox.parse("pdf", slow_pdf, "slow.pdf", OPTIONS)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=parse)
    thread.start()
    deadline = time.monotonic() + 10
    while not sandbox.pids() and time.monotonic() < deadline:
        time.sleep(0.02)
    [pid] = sandbox.pids()
    time.sleep(0.3)
    sandbox.close()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], BadInput)
    assert not _alive(pid)


@pytest.mark.timeout(60)  # a lost worker slot would block parse() for ever
def test_a_closed_sandbox_can_be_used_again(minimal_pdf: bytes) -> None:
    sandbox = Sandbox(workers=2)
    sandbox.close()  # before any worker started
    sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS)
    sandbox.close()
    sandbox.close()
    assert "Lorem ipsum" in sandbox.parse("pdf", minimal_pdf, "m.pdf", OPTIONS).text
    sandbox.close()
    assert sandbox.pids() == []


def test_workers_that_cannot_start_stop_the_caller_not_just_one_file() -> None:
    # A script read from stdin cannot be re-imported by spawned workers, so none starts.
    script = (
        "from feilun.core.errors import BackendUnavailable\n"
        "from feilun.data.parsing import ParseOptions\n"
        "from feilun.data.sandbox import Sandbox\n"
        "try:\n"
        "    Sandbox(workers=1).parse('text', b'hello', 'a.txt', ParseOptions())\n"
        "except BackendUnavailable as e:\n"
        "    print('refused:', e)\n"
    )
    result = subprocess.run(
        [sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120
    )
    assert "refused: the parse worker process could not start" in result.stdout, result.stderr
    assert "Sandbox(workers=0)" in result.stdout


def test_a_batch_gets_a_second_worker_only_when_large() -> None:
    limits = SandboxLimits(timeout_s=5)
    assert Sandbox.for_files(30, limits).workers == 1
    large = Sandbox.for_files(500, limits)
    assert large.workers == min(2, os.cpu_count() or 1) and large.limits is limits
    assert large.pids() == []  # nothing is started until a file needs parsing


def test_format_bytes() -> None:
    assert format_bytes(2 << 30) == "2 GiB"
    assert format_bytes(150 << 20) == "150 MiB"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(12) == "12 bytes"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie is dead to us
    except psutil.NoSuchProcess:
        return False
