"""Answer metrics and the statistics around them: EM/F1, intervals, paired tests.

English answers are scored as SQuAD v1.1's evaluate script does (lowercase, drop punctuation
and articles, whitespace tokens); answers with Chinese characters as CMRC 2018's does (mixed
segmentation: one token per Chinese character, F1 over the longest common substring).
Every statistic is a pure function of its inputs and a seed, so reports reproduce exactly.
"""

from __future__ import annotations

import math
import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
# The punctuation CMRC 2018's evaluation script strips, plus ASCII punctuation.
_CMRC_PUNCTUATION = frozenset(
    "-:_*^/\\~`+=，。：？！“”；’《》……·、「」（）－～『』" + string.punctuation
) | {"……"}
_EN_PUNCTUATION = frozenset(string.punctuation)
BOOTSTRAP_SAMPLES = 1000


def has_chinese(text: str) -> bool:
    """Whether `text` contains a CJK ideograph (then answers are scored per character)."""
    return _CJK.search(text) is not None


def normalize_en(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _EN_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def segment_mixed(text: str, drop_punctuation: bool = False) -> list[str]:
    """CMRC 2018's mixed segmentation: each Chinese character alone, other runs as words."""
    tokens: list[str] = []
    run = ""
    for ch in text.lower().strip():
        if drop_punctuation and ch in _CMRC_PUNCTUATION:
            continue
        if _CJK.match(ch) or ch in _CMRC_PUNCTUATION or ch.isspace():
            tokens.extend(re.findall(r"\w+|[^\w\s]", run))
            run = ""
            if not ch.isspace():
                tokens.append(ch)
        else:
            run += ch
    tokens.extend(re.findall(r"\w+|[^\w\s]", run))
    return tokens


def _strip_cmrc(text: str) -> str:
    return "".join(ch for ch in text.lower().strip() if ch not in _CMRC_PUNCTUATION)


def _longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def _f1(overlap: int, predicted: int, reference: int) -> float:
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference."""
    for reference in references:
        if has_chinese(reference):
            if _strip_cmrc(prediction) == _strip_cmrc(reference):
                return 1.0
        elif normalize_en(prediction) == normalize_en(reference):
            return 1.0
    return 0.0


def f1_score(prediction: str, references: Sequence[str]) -> float:
    """Best token F1 over the references (CMRC 2018 character LCS F1 for Chinese ones)."""
    best = 0.0
    for reference in references:
        if has_chinese(reference):
            ref_tokens = segment_mixed(reference, drop_punctuation=True)
            pred_tokens = segment_mixed(prediction, drop_punctuation=True)
            overlap = _longest_common_substring(ref_tokens, pred_tokens)
        else:
            ref_tokens = normalize_en(reference).split()
            pred_tokens = normalize_en(prediction).split()
            overlap = sum((Counter(ref_tokens) & Counter(pred_tokens)).values())
        best = max(best, _f1(overlap, len(pred_tokens), len(ref_tokens)))
    return best


def contains_reference(prediction: str, references: Sequence[str]) -> float:
    """1.0 when a normalised reference occurs inside the normalised prediction."""
    for reference in references:
        if has_chinese(reference):
            needle, hay = _strip_cmrc(reference), _strip_cmrc(prediction)
        else:
            needle, hay = normalize_en(reference), normalize_en(prediction)
        if needle and needle in hay:
            return 1.0
    return 0.0


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval (percentile bootstrap, or Wilson for a proportion)."""

    value: float
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        """`{"value", "low", "high"}`."""
        return {"value": self.value, "low": self.low, "high": self.high}


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (0.0 for no values)."""
    return sum(values) / len(values) if values else 0.0


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def bootstrap_interval(
    values: Sequence[float], seed: int, samples: int = BOOTSTRAP_SAMPLES
) -> Interval:
    """The mean of `values` with a 95% bootstrap interval (resampling items with replacement)."""
    if not values:
        return Interval(0.0, 0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return Interval(mean(values), _percentile(means, 0.025), _percentile(means, 0.975))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> Interval:
    """A proportion with its 95% Wilson score interval (sound near 0 and 1 and for small n)."""
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def stratified_interval(
    groups: dict[str, list[float]], seed: int, samples: int = BOOTSTRAP_SAMPLES
) -> Interval:
    """The mean of group means (a macro average), items resampled within each group."""
    if not groups:
        return Interval(0.0, 0.0, 0.0)
    rng = random.Random(seed)
    means = []
    for _ in range(samples):
        group_means = []
        for values in groups.values():
            n = len(values)
            group_means.append(sum(values[rng.randrange(n)] for _ in range(n)) / n)
        means.append(mean(group_means))
    means.sort()
    value = mean([mean(v) for v in groups.values()])
    return Interval(value, _percentile(means, 0.025), _percentile(means, 0.975))


@dataclass(frozen=True)
class PairedTest:
    """Candidate minus incumbent on the same items: the delta, its interval and p-value."""

    delta: float
    low: float
    high: float
    p_value: float
    method: str

    def to_json(self) -> dict[str, float | str]:
        """All fields as JSON."""
        return {
            "delta": self.delta,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "method": self.method,
        }


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], seed: int, samples: int = BOOTSTRAP_SAMPLES
) -> PairedTest:
    """Mean of b - a over paired items, 95% interval, and the two-sided bootstrap p-value."""
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} and {len(b)}")
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    if not diffs:
        return PairedTest(0.0, 0.0, 0.0, 1.0, "paired bootstrap")
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    at_or_below = sum(1 for m in means if m <= 0) / samples
    at_or_above = sum(1 for m in means if m >= 0) / samples
    p_value = min(1.0, 2 * min(at_or_below, at_or_above))
    return PairedTest(
        mean(diffs), _percentile(means, 0.025), _percentile(means, 0.975), p_value, "bootstrap"
    )


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> tuple[int, int, float]:
    """McNemar's test on paired right/wrong: (a-only right, b-only right, two-sided p-value).

    The exact binomial test on the discordant pairs (chi-square with continuity correction
    past 5000 of them, where the exact sum gets slow and the approximation is tight).
    """
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    discordant = only_a + only_b
    if discordant == 0:
        return only_a, only_b, 1.0
    if discordant > 5000:
        chi2 = (abs(only_a - only_b) - 1) ** 2 / discordant
        return only_a, only_b, math.erfc(math.sqrt(chi2 / 2))
    k = min(only_a, only_b)
    tail = sum(math.comb(discordant, i) for i in range(k + 1)) / 2**discordant
    return only_a, only_b, min(1.0, 2 * tail)
