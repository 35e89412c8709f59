"""core.blocking: work runs on the event loop unless it would block, then in a worker thread."""

from __future__ import annotations

import threading

import anyio
import pytest

from feilun.core.blocking import WouldBlock, ensure_may_block, may_block, run_nonblocking


def test_work_that_never_blocks_runs_on_the_loop() -> None:
    async def main() -> tuple[int, int]:
        return threading.get_ident(), await run_nonblocking(threading.get_ident)

    loop_thread, ran_on = anyio.run(main)
    assert ran_on == loop_thread


def test_work_about_to_block_runs_again_in_a_thread_where_it_may_block() -> None:
    calls: list[tuple[int, bool]] = []

    def load() -> str:
        calls.append((threading.get_ident(), may_block()))
        ensure_may_block()
        return "loaded"

    async def main() -> tuple[int, str]:
        return threading.get_ident(), await run_nonblocking(load)

    loop_thread, value = anyio.run(main)
    assert value == "loaded"
    assert calls[0] == (loop_thread, False)  # tried on the loop, stopped before blocking
    assert calls[1][0] != loop_thread and calls[1][1] is True
    assert may_block()  # outside run_nonblocking nothing changes


def test_other_errors_are_raised_not_retried() -> None:
    calls = []

    def fail() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        anyio.run(run_nonblocking, fail)
    assert calls == [1]


def test_ensure_may_block_raises_only_inside_run_nonblocking() -> None:
    ensure_may_block()

    def check() -> None:
        with pytest.raises(WouldBlock):
            ensure_may_block()

    async def main() -> None:
        await run_nonblocking(check)

    anyio.run(main)
