"""The `keywords` operator: a keyword safety filter over any word list.

The list may be the governance lexicon or your own; it is matched in one pass however many terms
it has, by the moderation lexicon's matcher (`feilun.governance.lexicon.KeywordMatcher`).

Latin letters (full-width ones too) match case-insensitively and Latin terms only as whole
words. An item with at least `min_hits` hits is rejected, flagged in `meta["keywords"]`, or has
its hits masked.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

import pydantic

from feilun.core.errors import ConfigError
from feilun.data.items import Item, Rejection
from feilun.governance.lexicon import Entry, KeywordMatcher, Lexicon, Match

logger = logging.getLogger(__name__)

MAX_TERMS_SHOWN = 3  # in a rejection reason
MAX_TERMS_KEPT = 20  # in meta["keywords"]["terms"]
TERM_CATEGORY = "keywords"  # every term of a word list stands for the same thing: a hit


def read_terms(path: Path | str) -> list[str]:
    """Terms of a word-list file: one per line, blank lines and `#` comment lines skipped."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"keywords.file: cannot read the word list {str(path)!r}: "
            f"{getattr(e, 'strerror', None) or e}",
            "give the path of a UTF-8 text file with one term per line (a relative path is "
            "read from the current directory)",
        ) from e
    stripped = (line.strip() for line in text.splitlines())
    return [line for line in stripped if line and not line.startswith("#")]


class Keywords:
    """Rejects, flags or masks items that contain terms of a word list."""

    name: ClassVar[str] = "keywords"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of the `keywords` operator."""

        model_config = pydantic.ConfigDict(extra="forbid")
        words: list[str] = pydantic.Field(
            default_factory=list, description="Terms to look for (with or instead of `file`)."
        )
        file: str | None = pydantic.Field(
            default=None,
            description="A UTF-8 word list: one term per line, `#` starts a comment line.",
        )
        action: Literal["reject", "flag", "mask"] = pydantic.Field(
            default="reject",
            description='reject the item, flag it in meta["keywords"], or mask each hit.',
        )
        min_hits: int = pydantic.Field(
            default=1, ge=1, description="Hits (non-overlapping) needed before acting."
        )
        mask_char: str = pydantic.Field(
            default="*",
            min_length=1,
            max_length=1,
            description="Character that replaces each character of a masked hit.",
        )
        use_word_boundaries: bool = pydantic.Field(
            default=True,
            description="Latin terms match whole words only (`ass` is not found in `class`).",
        )

        @pydantic.model_validator(mode="after")
        def _has_terms(self) -> Keywords.Params:
            if not self.words and not self.file:
                raise ValueError("give `words` (a list of terms), `file` (a word list), or both")
            return self

    def __init__(self, params: Params | None = None) -> None:
        if params is None:
            raise ConfigError(
                "the keywords operator needs a word list",
                "give `words: [...]` or `file: path/to/words.txt` in the recipe",
            )
        self.params = params
        terms = list(params.words)
        if params.file:
            terms += read_terms(params.file)
        self.terms = [t.strip() for t in terms if t.strip()]
        if not self.terms:
            raise ConfigError(
                f"keywords: the word list is empty (words={params.words!r}, file={params.file!r})",
                "add at least one term",
            )
        self._matcher: KeywordMatcher | None = None
        logger.debug("keywords: %d terms", len(self.terms))

    def __getstate__(self) -> dict[str, Any]:
        # Ship the terms, not the automaton: each worker rebuilds it on first use.
        return {**self.__dict__, "_matcher": None}

    @property
    def matcher(self) -> KeywordMatcher:
        """The automaton over the terms, built on first use."""
        if self._matcher is None:
            lexicon = Lexicon(tuple(Entry(t, TERM_CATEGORY) for t in self.terms))
            self._matcher = KeywordMatcher(lexicon, self.params.use_word_boundaries)
        return self._matcher

    def find(self, text: str) -> list[Match]:
        """Non-overlapping hits in `text` (leftmost, longest first)."""
        return self.matcher.find(text)

    def process(self, item: Item) -> Item | Rejection:
        """The item (flagged or masked), or a Rejection when it has at least `min_hits` hits."""
        p = self.params
        hits = self.find(item.text)
        terms = list(dict.fromkeys(m.term for m in hits))
        is_hit = len(hits) >= p.min_hits
        if is_hit and p.action == "reject":
            shown = ", ".join(terms[:MAX_TERMS_SHOWN]) + (
                ", …" if len(terms) > MAX_TERMS_SHOWN else ""
            )
            return Rejection(
                item=item, operator=self.name, reason=f"keywords: {len(hits)} hits ({shown})"
            )
        text = item.text
        if is_hit and p.action == "mask":
            pieces: list[str] = []
            last = 0
            for m in hits:
                pieces += [text[last : m.start], p.mask_char * (m.end - m.start)]
                last = m.end
            text = "".join([*pieces, text[last:]])
        found = {"hits": len(hits), "terms": terms[:MAX_TERMS_KEPT], "has_min_hits": is_hit}
        return dataclasses.replace(item, text=text, meta={**item.meta, self.name: found})
