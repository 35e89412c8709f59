"""The `language` operator: zh / en / other / mixed from script statistics, no model needed.

Letters are counted by script, digits and punctuation ignored. A Han, kana or Hangul character
weighs `wide_weight` Latin letters (one Chinese character carries about as much text as three
English letters: 3.27 on the parallel XQuAD contexts). Latin text is English only if enough of its
words are common English function words, so French or German text is `other`, not `en`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar, Literal

import pydantic

from feilun.data.items import Item, Rejection

LanguageCode = Literal["zh", "en", "other", "mixed"]
LANGUAGES: tuple[LanguageCode, ...] = ("zh", "en", "other", "mixed")

# The most frequent English words; English prose has 35-50% of its words in this list, other
# languages written in Latin letters a few percent (mostly "a", "in", "on").
_ENGLISH_WORDS = (
    "the of and to in is was for that on as with by at from be are were this which or an "
    "it not but have has had his her their its they he she we you i what who when where "
    "how why there been will would can could should may also than then these those into "
    "about after all any do does did if so such other more most one no our your them only "
    "over under"
)
ENGLISH_WORDS = frozenset(_ENGLISH_WORDS.split())
# Frequent words of other languages written in Latin letters (German, French, Spanish, Italian,
# Portuguese, Dutch), none of them an English word: they tell such text from English.
_FOREIGN_WORDS = (
    "der die und das ist nicht ein eine dem des sich auf für von zu werden wird wurde le "
    "les des est une du aux pas sont dans pour par sur qui que ne cette y es se un del por "
    "una para como más pero sus al di che della delle sono gli nel alla è uma não são dos "
    "das em na het een en niet zijn voor dat deze wordt"
)
FOREIGN_WORDS = frozenset(_FOREIGN_WORDS.split())
_LATIN_WORD = re.compile(r"[A-Za-zÀ-ÖØ-öø-ɏḀ-ỿ]+")


@dataclass(frozen=True)
class ScriptCounts:
    """Letters of a text by script (Han, kana, Hangul, Latin, any other alphabet)."""

    han: int = 0
    kana: int = 0
    hangul: int = 0
    latin: int = 0
    other: int = 0


def _script(cp: int) -> str:
    if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0xF900 <= cp <= 0xFAFF:
        return "han"
    if 0x20000 <= cp <= 0x3134F:
        return "han"
    if 0x3040 <= cp <= 0x30FF or 0x31F0 <= cp <= 0x31FF or 0xFF66 <= cp <= 0xFF9F:
        return "kana"
    if 0xAC00 <= cp <= 0xD7AF or 0x1100 <= cp <= 0x11FF or 0x3130 <= cp <= 0x318F:
        return "hangul"
    if cp < 0x250 or 0x1E00 <= cp <= 0x1EFF or 0xFF21 <= cp <= 0xFF5A:
        return "latin"
    return "other"


def count_scripts(text: str) -> ScriptCounts:
    """How many letters of each script `text` has (digits, punctuation, marks ignored)."""
    counts = {"han": 0, "kana": 0, "hangul": 0, "latin": 0, "other": 0}
    for ch in text:
        if ch.isalpha():
            counts[_script(ord(ch))] += 1
    return ScriptCounts(**counts)


@dataclass(frozen=True)
class LatinWords:
    """Words written in Latin letters: how many, and how many are English or foreign words."""

    words: int
    english: int
    foreign: int
    accented_share: float  # letters outside ASCII (é, ß, ư…) among all Latin letters


def count_latin_words(text: str) -> LatinWords:
    """Count the Latin-letter words of `text` that are frequent English or foreign words."""
    words = [w.lower() for w in _LATIN_WORD.findall(text)]
    letters = sum(len(w) for w in words)
    accented = sum(1 for w in words for ch in w if not ch.isascii())
    return LatinWords(
        words=len(words),
        english=sum(1 for w in words if w in ENGLISH_WORDS),
        foreign=sum(1 for w in words if w in FOREIGN_WORDS),
        accented_share=accented / letters if letters else 0.0,
    )


class Language:
    """Sets `meta["language"]` to zh, en, other or mixed; rejects languages not in `keep`."""

    name: ClassVar[str] = "language"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of the `language` operator."""

        model_config = pydantic.ConfigDict(extra="forbid")
        keep: list[LanguageCode] = pydantic.Field(
            default_factory=lambda: list(LANGUAGES),
            min_length=1,
            description="Languages to keep (zh, en, other, mixed); items in any other are removed.",
        )
        wide_weight: float = pydantic.Field(
            default=3.0,
            gt=0,
            description="How many Latin letters one Han, kana or Hangul character counts as.",
        )
        min_letters: int = pydantic.Field(
            default=1,
            ge=1,
            description="Fewest weighted letters needed to decide; fewer (numbers only, "
            "punctuation) is `other`.",
        )
        other_min_share: float = pydantic.Field(
            default=0.3,
            ge=0,
            le=1,
            description="Share of weighted letters in scripts other than Han and Latin (kana, "
            "Hangul, Cyrillic, Arabic…) from which the text is `other`.",
        )
        mixed_min_share: float = pydantic.Field(
            default=0.4,
            ge=0,
            le=0.5,
            description="Han and Latin both at least this share of their weighted letters: "
            "`mixed`.",
        )
        english_min_share: float = pydantic.Field(
            default=0.1,
            ge=0,
            le=1,
            description="Latin text is `en` when at least this share of its words are common "
            "English words, otherwise `other`.",
        )
        english_min_words: int = pydantic.Field(
            default=8,
            ge=0,
            description="Latin text with fewer words than this is `en` without the "
            "English-word check (too short to judge).",
        )

        accented_max_share: float = pydantic.Field(
            default=0.05,
            ge=0,
            le=1,
            description="Short Latin text with no English word and at least this share of "
            "accented letters (é, ß, ư) is `other`.",
        )

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or self.Params()

    def identify(self, text: str) -> LanguageCode:
        """The language of `text`: zh, en, other or mixed."""
        p = self.params
        c = count_scripts(text)
        han = c.han * p.wide_weight
        foreign = (c.kana + c.hangul) * p.wide_weight + c.other
        total = han + c.latin + foreign
        if total < p.min_letters:
            return "other"
        if foreign / total >= p.other_min_share:
            return "other"
        han_share = han / (han + c.latin)
        if min(han_share, 1 - han_share) >= p.mixed_min_share:
            return "mixed"
        if han_share > 0.5:
            return "zh"
        return "en" if self._is_english(count_latin_words(text)) else "other"

    def _is_english(self, w: LatinWords) -> bool:
        p = self.params
        if w.words < p.english_min_words:
            # Too short to judge by shares: English unless foreign words or accents say otherwise.
            if w.foreign > w.english:
                return False
            return w.english > 0 or w.accented_share < p.accented_max_share
        return w.english > w.foreign and w.english / w.words >= p.english_min_share

    def process(self, item: Item) -> Item | Rejection:
        """The item with `meta["language"]` set, or a Rejection if its language is not kept."""
        language = self.identify(item.text)
        if language not in self.params.keep:
            kept = ", ".join(self.params.keep)
            return Rejection(
                item=item,
                operator=self.name,
                reason=f"language: {language} not in keep=[{kept}]",
            )
        return dataclasses.replace(item, meta={**item.meta, "language": language})
