"""Token choice and text assembly for generation: sampling, detokenisation, stop strings.

Invariant: `TextStream` never releases text that a later token could still change — neither a
half-decoded multi-byte character nor the start of a possible stop string — so the pieces it
releases always concatenate to the final answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

REPLACEMENT = "\ufffd"


def choose_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Next token per row of `logits` (B, V): argmax at temperature 0, else nucleus sampling."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)  # (B,)
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)  # (B, V)
        # Keep the smallest prefix whose mass reaches top_p (always at least the best token).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        picked = torch.multinomial(sorted_probs, 1, generator=generator)  # (B, 1)
        return order.gather(-1, picked).squeeze(-1)  # (B,)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)  # (B,)


def held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class TextStream:
    """Turns one sequence's token ids into safe text pieces, honouring stop strings.

    Detokenisation is incremental (a window of recent tokens is decoded, as TGI does), so a
    multi-byte character split across tokens is released only once it is complete.
    """

    def __init__(self, decode: Callable[[list[int]], str], stops: Sequence[str]) -> None:
        self._decode = decode
        self._stops = [s for s in stops if s]
        self._ids: list[int] = []
        self._prefix = 0  # start of the decode window
        self._read = 0  # end of the part of the window already turned into text
        self.text = ""  # all complete text so far (cut at a stop string once one is found)
        self._released = 0
        self.is_stopped = False

    def push(self, token_id: int) -> str:
        """Add a generated token; the newly releasable text (maybe empty)."""
        self._ids.append(token_id)
        before = self._decode(self._ids[self._prefix : self._read])
        after = self._decode(self._ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            self._add(after[len(before) :])
            self._prefix, self._read = self._read, len(self._ids)
        return self._release(final=False)

    def finish(self) -> str:
        """No more tokens: the rest of the text, without a dangling half character."""
        if not self.is_stopped:
            tail = self._decode(self._ids[self._prefix :])
            done = self._decode(self._ids[self._prefix : self._read])
            self._add(tail[len(done) :].rstrip(REPLACEMENT))
        return self._release(final=True)

    def _add(self, piece: str) -> None:
        if self.is_stopped or not piece:
            return
        start = max(0, len(self.text) - max((len(s) for s in self._stops), default=0))
        self.text += piece
        hits = [i for i in (self.text.find(s, start) for s in self._stops) if i >= 0]
        if hits:
            self.text = self.text[: min(hits)]
            self.is_stopped = True

    def _release(self, final: bool) -> str:
        end = len(self.text)
        if not final and not self.is_stopped:
            end -= held_back(self.text, self._stops)
        end = max(end, self._released)
        piece = self.text[self._released : end]
        self._released = end
        return piece
