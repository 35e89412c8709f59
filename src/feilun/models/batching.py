"""Continuous batching: one scheduler thread decodes every concurrent request of a LeanLlama.

Each step, waiting requests are prefilled into free cache rows and join the batch, one forward
pass advances every running row by a token, and rows that finished (end token, stop string,
max_tokens) or whose caller stopped listening leave at once. Invariant: running requests hold
cache rows 0 .. B-1 (a leaving row is replaced by the last one), and a row's tokens depend only
on its own prompt and sampling settings, never on its batch mates (fp32; int8 activations are
quantised per tensor, so there batch mates can nudge results).
"""

from __future__ import annotations

import atexit
import logging
import queue
import secrets
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from feilun.core.protocols import Completion, Delta, FinishReason, GenerationParams, Usage
from feilun.models.decoding import TextStream, choose_next
from feilun.models.lean import LeanCache, LeanLlama

logger = logging.getLogger(__name__)

MAX_ROWS = 32  # most requests decoded together; later ones wait for a free row
KV_BUDGET_BYTES = 1 << 30  # the KV cache grows to this at most (one request may exceed it alone)
IDLE_S = 10.0  # the scheduler thread exits (and frees its cache) after this long without work
LENGTH_STEP = 128  # cache length grows in these steps, so it is rarely reallocated
# Decode steps of up to this many rows run on one intra-op thread. Measured on 2 cores (see
# benchmarks/README.md): in a thread other than the main one, a 2-thread OpenMP team makes a
# one-row int8 step 9.5 -> 16.4 ms and a 4-row step 15.2 -> 21.3 ms; at 16 rows it helps.
SINGLE_THREAD_ROWS = 8
_BATCHERS: weakref.WeakSet[Batcher] = weakref.WeakSet()


@dataclass
class Request:
    """One generation: its prompt and settings, its progress, and the queue its Deltas go to."""

    prompt: list[int]
    params: GenerationParams
    text: TextStream
    end_ids: frozenset[int]
    generator: torch.Generator | None = None
    # (previous token, logits row (V,)) -> logits row, applied before choosing: a watermark.
    logits_processor: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    last_token: int = -1  # the token the next logits follow (the prompt's last, at first)
    count: int = 0
    finish_reason: FinishReason | None = None
    is_cancelled: bool = False
    prefill_s: float = 0.0
    decode_s: float = 0.0
    decode_started: float = 0.0
    deltas: queue.SimpleQueue[Delta | BaseException] = field(default_factory=queue.SimpleQueue)

    @property
    def is_done(self) -> bool:
        """Finished, or abandoned by its caller."""
        return self.finish_reason is not None or self.is_cancelled

    def advance(self, token: int) -> Delta | None:
        """Take one sampled token; the Delta to send (None when no text is releasable yet)."""
        self.count += 1
        self.last_token = token
        reason: FinishReason | None = None
        if token in self.end_ids:
            piece, reason = "", "stop"
        else:
            piece = self.text.push(token)
            if self.text.is_stopped:
                reason = "stop"
            elif self.count >= self.params.max_tokens:
                reason = "length"
        if reason is None:
            return Delta(text=piece, completion_tokens=self.count) if piece else None
        self.finish_reason = reason
        self.decode_s = time.perf_counter() - self.decode_started
        usage = Usage(prompt_tokens=len(self.prompt), completion_tokens=self.count)
        piece += self.text.finish()
        return Delta(text=piece, completion_tokens=self.count, finish_reason=reason, usage=usage)

    def iterate(self) -> Iterator[Delta]:
        """The Deltas as they come; closing this early cancels the request."""
        try:
            while True:
                item = self.deltas.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self.is_cancelled = self.finish_reason is None


def new_request(
    prompt: list[int],
    params: GenerationParams,
    decode: Callable[[list[int]], str],
    end_ids: frozenset[int],
    logits_processor: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
) -> Request:
    """A Request with its own detokeniser and, when sampling, its own seeded generator."""
    generator = None
    if params.temperature > 0.0:
        generator = torch.Generator()
        generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
    stream = TextStream(decode, params.stop)
    return Request(prompt, params, stream, end_ids, generator, logits_processor, prompt[-1])


def sample(logits: torch.Tensor, requests: Sequence[Request]) -> list[int]:
    """Next token of each row of `logits` (B, V) with that row's own settings and generator."""
    for row, request in enumerate(requests):
        if request.logits_processor is not None:
            logits[row] = request.logits_processor(request.last_token, logits[row])
    tokens = logits.argmax(dim=-1)  # (B,): greedy rows need nothing else
    for row, request in enumerate(requests):
        if request.generator is not None:
            temperature, top_p = request.params.temperature, request.params.top_p
            picked = choose_next(logits[row : row + 1], temperature, top_p, request.generator)
            tokens[row] = picked[0]
    return [int(t) for t in tokens.tolist()]


def collect(request: Request, deltas: Iterator[Delta]) -> Completion:
    """Read all of `request`'s `deltas`; its whole answer."""
    pieces = [delta.text for delta in deltas]
    return Completion(
        text="".join(pieces),
        finish_reason=request.finish_reason or "length",
        usage=Usage(prompt_tokens=len(request.prompt), completion_tokens=request.count),
        prefill_s=request.prefill_s,
        decode_s=request.decode_s,
    )


class Batcher:
    """Owns a LeanLlama and decodes all submitted requests together on one daemon thread."""

    def __init__(
        self, lean: LeanLlama, name: str, threads: int | None = None, max_rows: int = MAX_ROWS
    ) -> None:
        self._lean = lean
        self._threads = threads or torch.get_num_threads()
        self._name = name
        self._max_rows = max_rows
        self._waiting: deque[Request] = deque()
        self._wakeup = threading.Condition()
        self._thread: threading.Thread | None = None
        # Owned by the scheduler thread: running requests by cache row, and per row the tokens
        # already in the cache and the sampled token still to feed.
        self._running: list[Request] = []
        self._lengths: list[int] = []
        self._next: list[int] = []
        self._cache: LeanCache | None = None
        self.peak_rows = 0  # the most rows one step has decoded (for tests and benchmarks)
        self._is_stopping = False
        _BATCHERS.add(self)

    def submit(self, request: Request) -> None:
        """Queue `request`; it joins the running batch at the next step."""
        with self._wakeup:
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"feilun-batcher-{self._name}", daemon=True
                )
                self._thread.start()
            self._wakeup.notify()

    def stop(self) -> None:
        """End the scheduler thread after its current step (at interpreter exit)."""
        with self._wakeup:
            self._is_stopping = True
            thread = self._thread
            self._wakeup.notify()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._waiting and not self._running and not self._is_stopping:
                    if not self._wakeup.wait(IDLE_S) and not self._waiting:
                        self._is_stopping = True
                if self._is_stopping:
                    self._thread, self._cache, self._is_stopping = None, None, False
                    return
            try:
                with torch.inference_mode():
                    self._step()
            except Exception as error:  # a bug: fail every caller instead of hanging them
                logger.exception("%s: batched decode failed", self._name)
                with self._wakeup:
                    failed = [*self._running, *self._waiting]
                    self._waiting.clear()
                for request in failed:
                    request.deltas.put(error)
                self._running, self._lengths, self._next, self._cache = [], [], [], None

    def _step(self) -> None:
        """Admit waiting requests, then advance every running row by one token."""
        while (request := self._admissible()) is not None:
            self._prefill(request)
        self._drop_done()
        if not self._running:
            return
        assert self._cache is not None
        rows = len(self._running)
        self.peak_rows = max(self.peak_rows, rows)
        _use_threads(1 if rows <= SINGLE_THREAD_ROWS else self._threads)
        tokens = torch.tensor(self._next)[:, None]  # (B, 1)
        logits = self._lean.forward(tokens, self._lengths, self._cache.rows(0, rows))  # (B, V)
        self._lengths = [length + 1 for length in self._lengths]
        self._next = sample(logits, self._running)
        for request, token in zip(self._running, self._next, strict=True):
            if not request.is_cancelled and (delta := request.advance(token)) is not None:
                request.deltas.put(delta)
        self._drop_done()

    def _admissible(self) -> Request | None:
        """The first waiting request, if a cache row is free for it (first come, first served)."""
        with self._wakeup:
            while self._waiting and self._waiting[0].is_cancelled:
                self._waiting.popleft()
            if not self._waiting:
                return None
            request = self._waiting[0]
            rows = len(self._running) + 1
            length = len(request.prompt) + request.params.max_tokens
            if self._running and (rows > self._max_rows or not self._reserve(rows, length, True)):
                return None
            return self._waiting.popleft()

    def _prefill(self, request: Request) -> None:
        """Run `request`'s prompt into the next free cache row and sample its first token."""
        row = len(self._running)
        self._reserve(row + 1, len(request.prompt) + request.params.max_tokens, False)
        assert self._cache is not None
        _use_threads(self._threads)  # a prompt is compute-bound: every thread helps
        started = time.perf_counter()
        ids = torch.tensor([request.prompt])  # (1, T)
        logits = self._lean.forward(ids, [0], self._cache.rows(row, row + 1))  # (1, V)
        request.decode_started = time.perf_counter()
        request.prefill_s = request.decode_started - started
        token = sample(logits, [request])[0]
        self._running.append(request)
        self._lengths.append(len(request.prompt))
        self._next.append(token)
        if (delta := request.advance(token)) is not None:
            request.deltas.put(delta)

    def _drop_done(self) -> None:
        """Free the rows of finished and cancelled requests; the last row fills each hole."""
        for row in reversed(range(len(self._running))):
            if not self._running[row].is_done:
                continue
            last = len(self._running) - 1
            if row != last:
                assert self._cache is not None
                filled = self._lengths[last]
                self._cache.keys[:, row, :, :filled] = self._cache.keys[:, last, :, :filled]
                self._cache.values[:, row, :, :filled] = self._cache.values[:, last, :, :filled]
                self._running[row] = self._running[last]
                self._lengths[row] = self._lengths[last]
                self._next[row] = self._next[last]
            self._running.pop()
            self._lengths.pop()
            self._next.pop()
        if not self._running:
            self._cache = None  # sized for the next batch, not the largest one so far

    def _reserve(self, rows: int, length: int, is_dry_run: bool) -> bool:
        """Grow the cache to hold `rows` rows of `length` positions; False if over budget."""
        cache = self._cache
        have_rows = 0 if cache is None else cache.keys.shape[1]
        have_length = 0 if cache is None else cache.keys.shape[3]
        if rows <= have_rows and length <= have_length:
            return True
        new_length = max(have_length, -(-length // LENGTH_STEP) * LENGTH_STEP)
        new_rows = max(rows, min(2 * have_rows, self._max_rows))
        if self._cache_bytes(new_rows, new_length) > KV_BUDGET_BYTES:
            new_rows = rows  # no spare rows when memory is tight
        if is_dry_run:
            return self._cache_bytes(new_rows, new_length) <= KV_BUDGET_BYTES
        grown = self._lean.new_cache(new_rows, new_length)
        if cache is not None:
            used = len(self._running)
            grown.keys[:, :used, :, :have_length] = cache.keys[:, :used]
            grown.values[:, :used, :, :have_length] = cache.values[:, :used]
        self._cache = grown
        return True

    def _cache_bytes(self, rows: int, length: int) -> int:
        lean = self._lean
        return int(2 * len(lean.layers) * rows * lean.n_kv * length * lean.head_dim * 4)


def _use_threads(count: int) -> None:
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)


@atexit.register
def _stop_all() -> None:
    # A daemon thread still inside a torch op when the interpreter finalises aborts the process
    # ("terminate called without an active exception"), so let every scheduler finish its step.
    for batcher in list(_BATCHERS):
        batcher.stop()
