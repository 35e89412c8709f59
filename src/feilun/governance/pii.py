"""Personal data detectors shared by every stage: data cleaning, serving traces, exports.

Kinds: Chinese resident ID numbers (region, birth date and ISO 7064 mod 11-2 check digit must be
valid), mainland mobile and landline numbers, emails, bank card numbers (card-network prefix and
Luhn check), IP addresses. A candidate that fails its check is not PII: an 18-digit order number
with a wrong check digit, a date, a version number `v1.2.3.4` or digits inside a longer run stay.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

PiiKind = Literal["id_card", "mobile", "landline", "email", "bank_card", "ip"]
KINDS: tuple[PiiKind, ...] = ("email", "id_card", "bank_card", "mobile", "landline", "ip")

MASKS: dict[str, dict[PiiKind, str]] = {
    "zh": {
        "id_card": "[身份证号]",
        "mobile": "[手机号]",
        "landline": "[固定电话]",
        "email": "[邮箱]",
        "bank_card": "[银行卡号]",
        "ip": "[IP地址]",
    },
    "en": {
        "id_card": "[ID_CARD]",
        "mobile": "[MOBILE]",
        "landline": "[PHONE]",
        "email": "[EMAIL]",
        "bank_card": "[BANK_CARD]",
        "ip": "[IP]",
    },
}

# Not preceded / followed by an ASCII letter or digit: a number inside a longer run is no PII.
_B = r"(?<![0-9A-Za-z])"
_E = r"(?![0-9A-Za-z])"
# Every kind needs one of these: an email its @, an IPv6 address its colons, the rest digits.
_MAY_HOLD_PII = re.compile(r"[\d@:]")
_PATTERNS: dict[PiiKind, re.Pattern[str]] = {
    "email": re.compile(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
        r"\.[A-Za-z]{2,}(?![A-Za-z0-9-])"
    ),
    "id_card": re.compile(_B + r"[1-8]\d{5}(?:18|19|20)\d{2}[01]\d[0-3]\d\d{3}[\dXx]" + _E),
    "bank_card": re.compile(
        _B + r"(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2}[ -]\d{1,4}(?:[ -]\d{1,3})?"
        r"|\d{4}[ -]\d{6}[ -]\d{4,5})" + _E
    ),
    "mobile": re.compile(r"(?<![0-9A-Za-z+])(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _E),
    "landline": re.compile(
        _B + r"(?:\((?:010|02\d|0[3-9]\d\d)\) ?|(?:010|02\d|0[3-9]\d\d)[ -])[2-9]\d{6,7}" + _E
    ),
    "ip": re.compile(
        r"(?<![0-9A-Za-z_.:])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
        r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?[0-9A-Za-z_])"
        r"|(?<![0-9A-Za-z_.:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![0-9A-Za-z_:])"
    ),
}
# Words after which a dotted quad is a version or an enzyme number (EC 1.14.16.2), not an address.
_VERSION_BEFORE = re.compile(
    r"(?<![A-Za-z])(?:version|ver\.?|release|v|EC|版本号?)\s*[:：]?\s*$", re.IGNORECASE
)
# First two digits of a resident ID: the province (83: Taiwan residents on the mainland).
_PROVINCES = "11-15 21-23 31-37 41-46 50-54 61-65 71 81-83"
_ID_PROVINCES = frozenset(
    str(code) for span in _PROVINCES.split() for code in range(int(span[:2]), int(span[-2:]) + 1)
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
# Card networks by leading digits (Visa, Mastercard, Amex, JCB, UnionPay, Discover, Diners).
_CARD_PREFIXES: tuple[str, ...] = ("4", "51", "52", "53", "54", "55", "34", "37", "35", "62")
_CARD_PREFIXES += ("60", "64", "65", "30", "36", "38", "39")


@dataclass(frozen=True)
class PiiMatch:
    """One piece of personal data: `text[start:end]` is of `kind`."""

    start: int
    end: int
    kind: PiiKind


def _has_id_layout(number: str) -> bool:
    """18 characters: a province code, then a real birth date at characters 7-14."""
    if len(number) != 18 or not number[:17].isdigit() or number[:2] not in _ID_PROVINCES:
        return False
    try:
        datetime.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return True


def is_valid_id_card(number: str) -> bool:
    """Whether an 18-character Chinese resident ID number has a valid region, date and check."""
    if not _has_id_layout(number):
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def is_luhn_valid(digits: str) -> bool:
    """Whether a digit string passes the Luhn check (bank card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card(candidate: str) -> bool:
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or _has_id_layout(digits):
        return False  # an ID-shaped number with a wrong check digit is no card either
    is_mastercard_2 = 2221 <= int(digits[:4]) <= 2720
    return (digits.startswith(_CARD_PREFIXES) or is_mastercard_2) and is_luhn_valid(digits)


def _is_ip(text: str, start: int, candidate: str) -> bool:
    if "." in candidate:
        # "v1.2.3.4", "version 1.2.3.4", "版本 1.2.3.4" are versions, not addresses.
        return not _VERSION_BEFORE.search(text[max(0, start - 12) : start])
    if sum(1 for group in candidate.split(":") if group) < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _is_valid(kind: PiiKind, text: str, start: int, candidate: str) -> bool:
    if kind == "id_card":
        return is_valid_id_card(candidate)
    if kind == "bank_card":
        return _is_card(candidate)
    if kind == "ip":
        return _is_ip(text, start, candidate)
    return True


def find_pii(text: str) -> list[PiiMatch]:
    """Personal data in `text`, by position, without overlaps (the longest match wins)."""
    if not _MAY_HOLD_PII.search(text):
        return []  # most strings of a request: no pattern can match, none is run
    candidates = []
    for priority, kind in enumerate(KINDS):
        for m in _PATTERNS[kind].finditer(text):
            if _is_valid(kind, text, m.start(), m.group()):
                candidates.append((m.start(), -m.end(), priority, kind))
    found: list[PiiMatch] = []
    end = 0
    for start, neg_end, _, kind in sorted(candidates):
        if start >= end:
            found.append(PiiMatch(start, -neg_end, kind))
            end = -neg_end
    return found


def mask_pii(text: str, language: Literal["zh", "en"] = "zh") -> str:
    """`text` with every piece of personal data replaced by its kind's mask (`[手机号]`)."""
    found = find_pii(text)
    if not found:
        return text
    masks = MASKS[language]
    pieces: list[str] = []
    last = 0
    for m in found:
        pieces += [text[last : m.start], masks[m.kind]]
        last = m.end
    pieces.append(text[last:])
    return "".join(pieces)
