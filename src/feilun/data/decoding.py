"""Bytes of a text file to str: a BOM first, then strict UTF-8, then detection.

Detectors guess badly on short Chinese text, so charset-normalizer's guess is checked against a
plausibility score that knows which CJK characters are common in GB2312 and in Big5: the guess
stands only when no other encoding reads at least as plausibly. Newlines come out as LF.
"""

from __future__ import annotations

import codecs
import logging
import re
import unicodedata
from collections.abc import Sequence
from functools import cache

from feilun.core.errors import BadInput

logger = logging.getLogger(__name__)

# Tried in this order; on equal plausibility the earlier one wins. GB18030 covers GBK and GB2312,
# cp950 is Windows Big5, cp932 Windows Shift-JIS, cp949 Windows EUC-KR, cp1252 Windows Latin-1.
COMMON_ENCODINGS = (
    "utf-8",
    "gb18030",
    "cp950",
    "utf-16-le",
    "utf-16-be",
    "cp932",
    "cp949",
    "cp1252",
)
_BOMS = (  # UTF-32 first: its little-endian BOM starts with the UTF-16 one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SAMPLE_BYTES = 8_192
_SHORT_GUESS_BYTES = 64  # below this a detected encoding is reported as a guess
_MAX_BAD_SHARE = 0.05  # more undecodable or control characters than this: not text
_FIRST_SUSPECT_BYTE = re.compile(rb"[\x00\x80-\xff]")
# Controls no text file has; tab, newlines, \v, \f, SUB (DOS end of file) and ESC are allowed.
_BAD_CHARS = re.compile("[\x01-\x08\x0e-\x19\x1c-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")
_NEWLINES = re.compile("\r\n?")


def decode_text(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """(text with LF newlines, encoding used, warnings); BadInput when it is not text."""
    warnings: list[str] = []
    body, encoding = _strip_bom(data)
    if encoding is not None:
        text = body.decode(encoding, errors="replace")
    elif (utf8 := _utf8_reading(data)) is not None:
        text, encoding = utf8, "utf-8"
    else:
        encoding = detect_encoding(data)
        text = data.decode(encoding, errors="replace")
        if len(data) < _SHORT_GUESS_BYTES and encoding != "utf-8":
            warnings.append(f"encoding guessed as {encoding} from only {len(data)} bytes")
    _check_is_text(text, name, encoding)
    replaced = text.count("\ufffd")
    if replaced:
        warnings.append(
            f"{replaced} characters could not be decoded as {encoding} and became U+FFFD"
        )
    logger.debug("decoded %s as %s", name, encoding)
    return _NEWLINES.sub("\n", text), encoding, warnings


def detect_encoding(data: bytes, encodings: Sequence[str] = COMMON_ENCODINGS) -> str:
    """The encoding in `encodings` under which a sample of `data` reads most plausibly."""
    from charset_normalizer import from_bytes

    sample = _sample(data)
    scores: dict[str, float] = {}
    for encoding in (codecs.lookup(e).name for e in encodings):
        if encoding.startswith(("utf-16", "utf-32")) and len(data) % 2:
            continue
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        reading = decoder.decode(sample, final=len(sample) == len(data))
        scores[encoding] = plausibility(reading, encoding)
    best = max(scores, key=scores.__getitem__)  # the first of the top scorers
    guess = from_bytes(sample, cp_isolation=list(scores)).best()
    if guess is not None:
        guessed = codecs.lookup(guess.encoding).name
        if scores.get(guessed, -1.0) >= scores[best]:
            best = guessed
    logger.debug("encoding scores %s; charset-normalizer: %s", scores, guess and guess.encoding)
    return best


def plausibility(text: str, encoding: str) -> float:
    """Mean per-character likelihood (0..1) that `text` is what a person wrote in `encoding`."""
    if not text:
        return 0.0
    if text.count("\ufffd") > len(text) // 5:
        return 0.0
    family = _cjk_family(encoding)
    total = 0.0
    last = len(text) - 1
    for i, ch in enumerate(text):
        w = _weight(ch, family)
        # A lone CJK character between two Latin letters is a misread Latin-1 accent.
        if ch >= "\u2e80" and 0 < i < last and _is_ascii_letter(text[i - 1] + text[i + 1]):
            w = 0.05
        total += w
    return total / len(text)


def _strip_bom(data: bytes) -> tuple[bytes, str | None]:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :], encoding
    return data, None


def _utf8_reading(data: bytes) -> str | None:
    """The text if `data` is UTF-8 (a few broken bytes allowed) without NULs or odd controls."""
    if b"\x00" in data:
        return None  # maybe UTF-16 without a BOM
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd")
    if not broken:
        return None if _BAD_CHARS.search(text) else text
    # Other encodings form valid UTF-8 sequences only by chance, rarely 4 for each broken one.
    non_ascii = len(text) - len(text.encode("ascii", errors="ignore")) - broken
    return text if non_ascii >= 4 * broken else None


def _sample(data: bytes) -> bytes:
    """Up to _SAMPLE_BYTES starting just before the first byte that is not plain ASCII."""
    found = _FIRST_SUSPECT_BYTE.search(data)
    if found is None or len(data) <= _SAMPLE_BYTES:
        return data
    start = max(0, found.start() - 1024) & ~1  # even, so UTF-16 stays aligned
    return data[start : start + _SAMPLE_BYTES]


def _check_is_text(text: str, name: str, encoding: str) -> None:
    fix = "re-save it as UTF-8 text, or leave it out if it is not a text file"
    if "\x00" in text:
        raise BadInput(f"{name} contains NUL bytes, so it is binary data, not text", fix)
    bad = len(_BAD_CHARS.findall(text))
    if text and bad / len(text) > _MAX_BAD_SHARE:
        raise BadInput(
            f"{name} is not text in any common encoding "
            f"({bad} of {len(text)} characters are undecodable or control codes as {encoding})",
            fix,
        )


def _is_ascii_letter(pair: str) -> bool:
    return pair.isascii() and pair.isalpha()


def _cjk_family(encoding: str) -> str:
    """Which list of common CJK characters a reading in `encoding` is judged by."""
    if encoding == "gb18030":
        return "simplified"
    if encoding in ("cp950", "big5"):
        return "traditional"
    return "either"


@cache
def _weight(ch: str, family: str) -> float:
    o = ord(ch)
    if o < 0x80:
        return 1.0 if ch.isprintable() or ch in "\t\n\r\f" else 0.0
    if 0x4E00 <= o <= 0x9FFF:  # CJK unified ideographs
        simplified = family != "traditional" and _is_common_simplified(ch)
        return 1.0 if simplified or (family != "simplified" and _is_common_traditional(ch)) else 0.4
    if 0x3000 <= o <= 0x30FF or 0xFF01 <= o <= 0xFF5E:  # CJK punctuation, kana, full-width
        return 1.0
    if 0xAC00 <= o <= 0xD7A3:  # Hangul syllables
        return 0.6
    if 0xFF61 <= o <= 0xFF9F:  # half-width katakana: usually misread GBK
        return 0.1
    category = unicodedata.category(ch)
    if category in ("Cc", "Cn", "Co", "Cs") or o == 0xFFFD:
        return 0.0
    if category.startswith("L"):
        return 0.7 if o < 0x250 else 0.5  # Latin letters with accents; other scripts
    if category.startswith("Z") or (category.startswith("P") and o < 0x2070):
        return 0.5
    return 0.1


def _is_common_simplified(ch: str) -> bool:
    """In GB2312 level 1: the 3,755 most used simplified characters."""
    try:
        return 0xB0 <= ch.encode("gb2312")[0] <= 0xD7
    except UnicodeEncodeError:
        return False


def _is_common_traditional(ch: str) -> bool:
    """In Big5's frequent block: the 5,401 most used traditional characters."""
    try:
        code = int.from_bytes(ch.encode("big5"), "big")
    except UnicodeEncodeError:
        return False
    return 0xA440 <= code <= 0xC67E
