"""Our BM25 against two references no one here wrote: bm25s and rank_bm25, same tokens."""

from __future__ import annotations

import json
import math
from pathlib import Path

import bm25s
import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.lexical import build_lexical, lexical_from_bytes, lexical_to_bytes

SCIFACT = Path("../shared/data/scifact")


@pytest.fixture(scope="module")
def corpus() -> tuple[list[list[str]], list[list[str]]]:
    """(analyzed documents, analyzed queries): 300 SciFact abstracts and 40 claims."""
    analyzer = Analyzer()
    with (SCIFACT / "corpus.jsonl").open(encoding="utf-8") as f:
        docs = [json.loads(line) for _, line in zip(range(300), f, strict=False)]
    with (SCIFACT / "queries.jsonl").open(encoding="utf-8") as f:
        queries = [json.loads(line)["text"] for _, line in zip(range(40), f, strict=False)]
    return (
        analyzer.analyze_many(f"{d['title']} {d['text']}" for d in docs),
        analyzer.analyze_many(queries),
    )


def test_scores_equal_bm25s_lucene(corpus: tuple[list[list[str]], list[list[str]]]) -> None:
    docs, queries = corpus
    ours = build_lexical(docs, k1=1.2, b=0.75)
    reference = bm25s.BM25(k1=1.2, b=0.75, method="lucene")
    reference.index(docs, show_progress=False)
    for query in queries:
        known = [t for t in query if t in reference.vocab_dict]
        expected = reference.get_scores(known) if known else np.zeros(len(docs))
        np.testing.assert_allclose(ours.score(query), expected, rtol=1e-5, atol=1e-5)


class LuceneIdfOkapi(BM25Okapi):
    """rank_bm25's Okapi with Lucene's idf, ln(1 + (N - df + 0.5) / (df + 0.5))."""

    def _calc_idf(self, nd: dict[str, int]) -> None:
        self.idf = {t: math.log1p((self.corpus_size - n + 0.5) / (n + 0.5)) for t, n in nd.items()}


def test_scores_match_rank_bm25(corpus: tuple[list[list[str]], list[list[str]]]) -> None:
    docs, queries = corpus
    ours = build_lexical(docs, k1=1.5, b=0.75)
    reference = LuceneIdfOkapi(docs, k1=1.5, b=0.75)
    for query in queries:
        # rank_bm25 multiplies by (k1 + 1), which Lucene's formula drops: same ranking.
        expected = reference.get_scores(query) / 2.5
        np.testing.assert_allclose(ours.score(query), expected, rtol=1e-4, atol=1e-5)


def test_round_trip_and_edges(corpus: tuple[list[list[str]], list[list[str]]]) -> None:
    docs, queries = corpus
    ours = build_lexical(docs)
    again = lexical_from_bytes(lexical_to_bytes(ours))
    assert again.vocabulary == ours.vocabulary and (again.k1, again.b) == (ours.k1, ours.b)
    np.testing.assert_array_equal(again.score(queries[0]), ours.score(queries[0]))
    assert not ours.score(["zzz-not-a-term"]).any()
    assert not ours.score([]).any()
    empty = build_lexical([])
    assert empty.size == 0 and empty.score(["a"]).shape == (0,)
    assert build_lexical([[], ["a"]]).score(["a"])[1] > 0
