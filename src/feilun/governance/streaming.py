"""The stream guard: moderates a streamed answer piece by piece, with bounded lookback.

`feed(piece)` returns a Verdict whose `text` is what may be sent now. A term split across
pieces is caught because the guard holds back the shortest tail that could still begin a
term (less than the longest term) and rescans it with the next piece; the rest is released
at once. The cost per piece is O(piece + longest term) however long the answer grows. A
refuse or block stops the stream: later feeds release nothing and repeat that verdict.
`finish()` releases what was held back. Hit offsets count from the start of the stream.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from feilun.governance.lexicon import fold_case, select_hits
from feilun.governance.moderation import Hit, Language, Verdict, detect_language, judge

if TYPE_CHECKING:
    from feilun.governance.moderation import Moderator, Policy

#: The classifier (if any) judges the latest this-many characters ...
CLASSIFIER_WINDOW_CHARS = 200
#: ... each time at least this many new characters have arrived (and at the end).
CLASSIFIER_EVERY_CHARS = 50
_LANGUAGE_SAMPLE_CHARS = 200


class StreamGuard:
    """Moderation of one streamed text; create one per stream with `Moderator.stream()`.

    Pass the prompt's language to `Moderator.stream` so a refusal is in the user's language;
    otherwise it is detected from the first characters of the stream.
    """

    def __init__(self, moderator: Moderator, policy: Policy, language: Language | None) -> None:
        self.moderator = moderator
        self.policy = policy
        self.language = language
        self.released_chars = 0
        self._context = ""  # the last released character (for a Latin term's left boundary)
        self._held = ""  # unreleased text that may begin a term
        self._sample = ""  # the first characters, to detect the language
        self._recent = ""  # the latest characters, for the classifier
        self._unjudged_chars = 0
        self._stopped: Verdict | None = None

    def feed(self, piece: str) -> Verdict:
        """The verdict on the stream so far; `text` is what may be sent now."""
        return self._advance(piece, is_final=False)

    def finish(self) -> Verdict:
        """The verdict at the end of the stream; `text` is whatever was still held back."""
        return self._advance("", is_final=True)

    def _advance(self, piece: str, is_final: bool) -> Verdict:
        if self._stopped is not None:
            return replace(self._stopped, text="")
        if len(self._sample) < _LANGUAGE_SAMPLE_CHARS:
            self._sample += piece[:_LANGUAGE_SAMPLE_CHARS]
        language = self.language or detect_language(self._sample)
        matcher = self.moderator.matcher
        window = self._context + self._held + piece
        skip = len(self._context)
        base = self.released_chars - skip  # stream offset of window[0]
        folded = fold_case(window)
        found, pending = matcher.scan(folded, is_open_end=not is_final)
        new = [m for m in select_hits(found) if m.end > skip]
        hits = self.moderator.lexicon_hits(new, self.policy)  # window offsets
        cut = open_start = len(window)
        if not is_final:
            open_start -= matcher.longest_open_prefix(folded)
            cut = min(open_start, pending)
            for h in hits:  # never split a hit: release it whole or hold it whole
                if h.start < cut < h.end:
                    cut = h.start
        cut = max(cut, skip)
        # Held hits are judged again with the next piece, except the ones that stop the stream
        # now: those no longer term (an allowed one included) can still grow over.
        judged = [
            h
            for h in hits
            if h.end <= cut or (h.action in ("refuse", "block") and h.start < open_start)
        ]
        out = window[skip:cut]
        local = [replace(h, start=h.start - skip, end=h.end - skip) for h in judged]
        classified = self._classifier_hits(piece, is_final)
        verdict = judge(out, language, local + classified, self.policy)
        shifted = [replace(h, start=h.start + base, end=h.end + base) for h in judged]
        verdict = replace(verdict, hits=tuple(shifted + classified))
        self._held = window[cut:]
        self.released_chars += len(out)
        if out:
            self._context = out[-1]
        if verdict.decision in ("refuse", "block"):
            self._stopped = verdict
            return replace(verdict, text="")
        return verdict

    def _classifier_hits(self, piece: str, is_final: bool) -> list[Hit]:
        if self.moderator.classifier is None:
            return []
        self._recent = (self._recent + piece)[-CLASSIFIER_WINDOW_CHARS:]
        self._unjudged_chars += len(piece)
        is_due = self._unjudged_chars >= CLASSIFIER_EVERY_CHARS
        if not (is_due or (is_final and self._unjudged_chars)):
            return []
        self._unjudged_chars = 0
        end = self.released_chars + len(self._held) + len(piece)
        return self.moderator.classifier_hits(
            self._recent, self.policy, offset=end - len(self._recent)
        )
