from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import pydantic
import pytest

from feilun.core.errors import ConfigError
from feilun.core.registry import lookup
from feilun.data.items import Item, Rejection
from feilun.data.operators.keywords import Keywords, read_terms
from feilun.data.recipes import validate_recipe

DATA = Path("../shared/data")
LEXICON = DATA / "sensitive-lexicon-zh"


def keywords(**params: object) -> Keywords:
    return Keywords(Keywords.Params.model_validate(params))


def xsafety() -> list[dict[str, str]]:
    with (DATA / "xsafety" / "prompts.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_registered_under_its_name() -> None:
    assert lookup("operators", "keywords") is Keywords


def test_reject_names_the_hits() -> None:
    op = keywords(words=["炸药", "雷管", "TNT"])
    result = op.process(Item("d", "用tnt和炸药，再加雷管，炸药"))
    assert isinstance(result, Rejection)
    assert result.reason == "keywords: 4 hits (TNT, 炸药, 雷管)"
    many = keywords(words=["甲", "乙", "丙", "丁"]).process(Item("d", "甲乙丙丁"))
    assert isinstance(many, Rejection)
    assert many.reason == "keywords: 4 hits (甲, 乙, 丙, …)"
    clean = op.process(Item("d", "储存危险化学品的单位"))
    assert isinstance(clean, Item)
    assert clean.meta["keywords"] == {"hits": 0, "terms": [], "has_min_hits": False}


def test_min_hits() -> None:
    op = keywords(words=["赌博"], min_hits=2)
    once = op.process(Item("d", "禁止赌博。"))
    assert isinstance(once, Item) and once.meta["keywords"]["hits"] == 1
    assert isinstance(op.process(Item("d", "禁止赌博，严禁赌博。")), Rejection)


def test_flag_and_mask() -> None:
    flagged = keywords(words=["赌博"], action="flag").process(Item("d", "网络赌博", {"k": 1}))
    assert isinstance(flagged, Item)
    assert flagged.text == "网络赌博"
    assert flagged.meta == {
        "k": 1,
        "keywords": {"hits": 1, "terms": ["赌博"], "has_min_hits": True},
    }
    masked = keywords(words=["赌博", "casino"], action="mask").process(
        Item("d", "网络赌博 and Casino games, casinos")
    )
    assert isinstance(masked, Item)
    assert masked.text == "网络** and ****** games, casinos"


def test_word_file_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "words.txt"
    path.write_text("\ufeff# 爆炸物\n炸药\n\n  雷管  \n# TNT\n", encoding="utf-8")
    assert read_terms(path) == ["炸药", "雷管"]
    op = keywords(file=str(path), words=["TNT"])
    assert op.terms == ["TNT", "炸药", "雷管"]
    assert isinstance(op.process(Item("d", "TNT")), Rejection)
    assert isinstance(op.process(Item("d", "# TNT 以外")), Rejection)  # TNT, not the comment


def test_real_lexicon_file_on_real_prompts() -> None:
    path = LEXICON / "original" / "色情类型.txt"
    terms = [t.strip() for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]
    op = keywords(file=str(path))
    assert len(op.terms) == len(set(terms)) > 50
    rows = xsafety()
    rejected = {
        r["id"] for r in rows if isinstance(op.process(Item(r["id"], r["prompt_zh"])), Rejection)
    }
    expected = {r["id"] for r in rows if any(t in r["prompt_zh"] for t in terms)}
    assert rejected == expected
    assert rejected  # two prompts about 性虐


def test_fifteen_thousand_terms_in_one_operator() -> None:
    with (LEXICON / "words.jsonl").open(encoding="utf-8") as f:
        words = sorted({json.loads(line)["word"] for line in f})
    op = keywords(words=words, action="flag")
    assert len(op.terms) > 15_000
    insults = [r for r in xsafety() if r["category"] == "Insult"]
    flagged = [op.process(Item(r["id"], r["prompt_zh"])) for r in insults]
    # Measured 33 of 50 (the lexicon has abuse terms, and ordinary words too: 出, 法, 没有).
    assert sum(isinstance(i, Item) and i.meta["keywords"]["hits"] > 0 for i in flagged) >= 30


def test_bad_word_lists_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the word list") as info:
        keywords(file=str(tmp_path / "missing.txt"))
    assert info.value.fix and "one term per line" in info.value.fix
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="word list is empty"):
        keywords(file=str(empty))
    with pytest.raises(pydantic.ValidationError, match="give `words`"):
        Keywords.Params.model_validate({"action": "flag"})
    with pytest.raises(ConfigError, match="needs a word list"):
        Keywords()


def test_recipe_builds_it_and_reports_missing_words() -> None:
    recipe = validate_recipe(
        {"description": "d", "operators": [{"op": "keywords", "words": ["炸药"], "min_hits": 2}]}
    )
    assert recipe.steps[0].params["min_hits"] == 2
    with pytest.raises(ConfigError, match=r"operators\[0\]"):
        validate_recipe({"description": "d", "operators": [{"op": "keywords"}]})


def test_survives_pickle_and_leaves_input_unchanged() -> None:
    op = keywords(words=["炸药", "TNT"], action="mask")
    item = Item("d", "TNT 炸药", {"nested": {"a": 1}})
    before = copy.deepcopy(item)
    first = op.process(item)  # builds the automaton
    clone = pickle.loads(pickle.dumps(op))
    assert clone._matcher is None  # the terms travel, the automaton is rebuilt
    assert clone.process(item) == first
    assert isinstance(first, Item) and first.text == "*** **"
    assert item == before
