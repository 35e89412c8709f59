from __future__ import annotations

import random

import pytest
from scipy import stats

from feilun.evaluation.metrics import (
    bootstrap_interval,
    contains_reference,
    exact_match,
    f1_score,
    mcnemar,
    paired_bootstrap,
    segment_mixed,
)


def test_english_answers_are_scored_as_squad_scores_them() -> None:
    # SQuAD v1.1 normalisation: case, punctuation and articles do not count.
    assert exact_match("The Denver Broncos!", ["Denver Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    # "Denver Broncos" vs "the Broncos of Denver": overlap 2 tokens, P = 2/3, R = 1.
    assert f1_score("the Broncos of Denver", ["Denver Broncos"]) == pytest.approx(0.8)
    assert f1_score("Paris", ["London", "paris"]) == 1.0  # the best reference counts


def test_chinese_answers_are_scored_per_character_as_cmrc2018_does() -> None:
    assert segment_mixed("盛大游戏Nexon公司，2008年") == [
        "盛",
        "大",
        "游",
        "戏",
        "nexon",
        "公",
        "司",
        "，",
        "2008",
        "年",
    ]
    assert exact_match("盛大网络。", ["盛大网络"]) == 1.0  # punctuation is dropped
    # CMRC F1 is over the longest common substring: 盛大 (2 of 4 predicted, 2 of 3 reference).
    assert f1_score("盛大公司", ["盛大网"]) == pytest.approx(2 * (0.5 * 2 / 3) / (0.5 + 2 / 3))
    assert f1_score("韩国", ["盛大网络"]) == 0.0


def test_contains_reference_in_both_languages() -> None:
    assert contains_reference("I think it is Paris, France.", ["paris"]) == 1.0
    assert contains_reference("答案是北京。", ["北京"]) == 1.0
    assert contains_reference("上海", ["北京"]) == 0.0


def test_bootstrap_interval_is_seeded_and_brackets_the_mean() -> None:
    values = [1.0] * 30 + [0.0] * 70
    first, again = bootstrap_interval(values, seed=7), bootstrap_interval(values, seed=7)
    assert first == again
    assert first.value == pytest.approx(0.3)
    assert first.low < 0.3 < first.high
    # The normal approximation of a proportion's 95% interval: 0.3 ± 1.96 * sqrt(.21 / 100).
    half = 1.96 * (0.21 / 100) ** 0.5
    assert first.low == pytest.approx(0.3 - half, abs=0.03)
    assert first.high == pytest.approx(0.3 + half, abs=0.03)


@pytest.mark.parametrize(
    ("only_a", "only_b", "rel"),
    [(3, 12, 1e-9), (0, 7, 1e-9), (20, 22, 1e-9), (500, 560, 1e-9), (3000, 3150, 1e-2)],
)
def test_mcnemar_equals_scipys_exact_binomial_test(only_a: int, only_b: int, rel: float) -> None:
    a = [True] * only_a + [False] * only_b + [True] * 10 + [False] * 5
    b = [False] * only_a + [True] * only_b + [True] * 10 + [False] * 5
    got_a, got_b, p_value = mcnemar(a, b)
    assert (got_a, got_b) == (only_a, only_b)
    expected = stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert p_value == pytest.approx(expected, rel=rel)  # chi-square past 5000 pairs


def test_paired_bootstrap_sees_a_real_improvement_and_not_noise() -> None:
    rng = random.Random(0)
    a = [float(rng.random() < 0.5) for _ in range(200)]
    better = [1.0 if rng.random() < 0.6 else x for x in a]
    test = paired_bootstrap(a, better, seed=1)
    assert test.delta > 0.2 and test.low > 0 and test.p_value < 0.01
    same = paired_bootstrap(a, list(a), seed=1)
    assert same.delta == 0.0 and same.p_value == 1.0
