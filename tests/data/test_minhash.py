from __future__ import annotations

import numpy as np
import pytest
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from feilun.data.minhash import (
    canonical_chars,
    estimate_jaccard,
    find_near_duplicates,
    optimal_bands,
    shingle_hashes,
    signature,
)

ZH = "第一条 为了预防火灾和减少火灾危害，加强应急救援工作，保护人身、财产安全，维护公共安全。"


def datasketch_signature(hashes: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    m = MinHash(num_perm=num_perm, seed=seed, hashfunc=lambda value: value)
    for value in hashes.tolist():
        m.update(value)
    return np.asarray(m.hashvalues)


@pytest.mark.parametrize(("num_perm", "seed", "size"), [(128, 1, 300), (64, 7, 20_000)])
def test_signature_equals_datasketch_bit_for_bit(num_perm: int, seed: int, size: int) -> None:
    # size 20_000 spans several blocks of the (num_perm x block) matrix.
    hashes = np.random.default_rng(seed).integers(0, 2**32, size, dtype=np.uint32)
    ours = signature(hashes, num_perm, seed)
    assert ours.dtype == np.uint32
    np.testing.assert_array_equal(ours, datasketch_signature(hashes, num_perm, seed))


def test_signature_of_chinese_text_equals_datasketch() -> None:
    hashes = shingle_hashes(ZH, 5)
    np.testing.assert_array_equal(signature(hashes, 128, 1), datasketch_signature(hashes, 128, 1))


def test_signature_does_not_mutate_its_input() -> None:
    hashes = np.arange(1000, dtype=np.uint32)
    signature(hashes, 32, 1)
    np.testing.assert_array_equal(hashes, np.arange(1000, dtype=np.uint32))


def test_estimated_jaccard_is_close_to_true_jaccard_on_random_sets() -> None:
    rng = np.random.default_rng(0)
    errors = []
    for true_jaccard in (0.1, 0.3, 0.5, 0.7, 0.9):
        for _ in range(4):
            shared, own = 2000, round(2000 * (1 - true_jaccard) / true_jaccard / 2)
            pool = rng.choice(2**32, shared + 2 * own, replace=False).astype(np.uint32)
            first = pool[: shared + own]
            second = np.concatenate([pool[:shared], pool[shared + own :]])
            exact = shared / (shared + 2 * own)
            estimate = estimate_jaccard(signature(first, 256, 1), signature(second, 256, 1))
            errors.append(abs(estimate - exact))
    # std of the estimate is at most sqrt(0.25 / 256) = 0.031
    assert max(errors) < 0.11
    assert float(np.mean(errors)) < 0.03


def test_unrelated_random_sets_estimate_near_zero() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.choice(2**32, (2, 500), replace=False).astype(np.uint32)
    assert estimate_jaccard(signature(a, 128, 1), signature(b, 128, 1)) < 0.05


@pytest.mark.parametrize("num_perm", [64, 128])
def test_optimal_bands_match_datasketch(num_perm: int) -> None:
    for threshold in (0.3, 0.5, 0.7, 0.8, 0.9, 0.95):
        assert optimal_bands(threshold, num_perm) == _optimal_param(threshold, num_perm, 0.5, 0.5)


def test_shingles_ignore_whitespace_punctuation_case_and_width() -> None:
    assert canonical_chars("Hello,  World!\n") == "helloworld"
    assert canonical_chars("ＡＢＣ１２３") == "abc123"  # full-width letters and digits (NFKC)
    same = shingle_hashes(ZH, 5)
    respaced = shingle_hashes(ZH.replace("，", ", ").replace("。", ".") + "\n\n", 5)
    np.testing.assert_array_equal(same, respaced)
    assert not np.array_equal(same, shingle_hashes(ZH.replace("火灾", "水灾"), 5))


def test_shingle_hashes_follow_the_character_ngrams() -> None:
    text = "安全生产安全生产，管理安全生产 and safety, safety first"
    chars = canonical_chars(text)
    grams = [chars[i : i + 4] for i in range(len(chars) - 3)]
    hashes = shingle_hashes(text, 4).tolist()
    assert len(hashes) == len(grams)
    by_gram = dict(zip(grams, hashes, strict=True))
    assert [by_gram[g] for g in grams] == hashes  # equal n-grams, equal hashes
    assert len(set(by_gram.values())) == len(by_gram)  # distinct n-grams, distinct hashes


def test_short_and_empty_texts() -> None:
    assert len(shingle_hashes("火灾", 5)) == 1  # shorter than ngram: one shingle
    assert len(shingle_hashes("", 5)) == 0
    assert len(shingle_hashes(" ，。!? \n", 5)) == 0


def test_first_seen_logic_compares_only_with_kept_items() -> None:
    # A ~ B (0.85) and B ~ C (0.85), but A vs C is 0.70: B goes, so C (only like B) stays.
    num_perm, bands, rows = 100, 20, 5
    a = np.arange(num_perm, dtype=np.uint32)
    b = a.copy()
    b[:15] += 1000  # differs from A in bands 0-2
    c = b.copy()
    c[15:30] += 2000  # differs from B in bands 3-5, from A in bands 0-5
    d = np.arange(num_perm, dtype=np.uint32) + 5000  # unrelated
    signatures = np.stack([a, b, c, d, a.copy()])
    found = find_near_duplicates(signatures, 0.8, bands, rows)
    assert found == {1: (0, 0.85), 4: (0, 1.0)}


def test_most_similar_earlier_kept_item_is_named() -> None:
    num_perm = 100
    a = np.arange(num_perm, dtype=np.uint32)
    b = a + 5000
    b[:50] = a[:50]  # 0.5 like A: kept at threshold 0.8
    c = b.copy()
    c[90:] += 7  # 0.9 like B, 0.5 like A
    found = find_near_duplicates(np.stack([a, b, c]), 0.8, 20, 5)
    assert found == {2: (1, 0.9)}
