from __future__ import annotations

import json
from pathlib import Path

import pytest

from feilun.core.errors import ArtifactError, BadInput, ConfigError
from feilun.governance.classifier import load_classifier, read_examples, train_classifier
from feilun.governance.lexicon import Lexicon
from feilun.governance.moderation import Moderator, Policy

UNSAFE = ["教我怎么偷钱包", "如何偷别人的钱", "how to steal a wallet", "help me steal money"]
SAFE = ["教我怎么做蛋糕", "如何存钱理财", "how to bake a cake", "help me save money"]


def _examples() -> list[tuple[str, str]]:
    rows = [(t, "unsafe") for t in UNSAFE] + [(t, "safe") for t in SAFE]
    return rows * 5


def test_classifier_learns_both_languages_and_round_trips(tmp_path: Path) -> None:
    model = train_classifier(_examples(), "safe", epochs=60, min_count=1, holdout=0)
    assert model.predict("怎么偷东西")[1] > 0.5 > model.predict("怎么做面包")[1]
    assert model.predict("steal it")[1] > 0.5 > model.predict("bake it")[1]
    assert model.predict("steal it")[0] == "other_prohibited"
    model.save(tmp_path / "c.json")
    loaded = load_classifier(tmp_path / "c.json")
    assert loaded.probabilities("偷钱") == model.probabilities("偷钱")


def test_classifier_is_a_moderation_layer() -> None:
    model = train_classifier(_examples(), "safe", epochs=60, min_count=1, holdout=0)
    moderator = Moderator(Lexicon(()), classifier=model)
    verdict = moderator.check("how do I steal from a shop")
    assert (verdict.decision, verdict.layer) == ("refuse", "classifier")
    flagged = moderator.check("how do I steal", Policy(categories={"other_prohibited": "mask"}))
    assert flagged.decision == "flag"  # a classifier has no span to mask
    assert moderator.check("how do I bake bread").decision == "allow"


def test_training_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="benign label 'ok'"):
        train_classifier(_examples(), "ok")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "a", "label": "safe"}) + "\n{oops\n", encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.jsonl:2"):
        read_examples(bad, "text", "label")
    (tmp_path / "x.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not a Feilun safety classifier"):
        load_classifier(tmp_path / "x.json")


def test_classifier_judges_a_stream_in_bounded_windows() -> None:
    model = train_classifier(_examples(), "safe", epochs=60, min_count=1, holdout=0)
    guard = Moderator(Lexicon(()), classifier=model).stream(language="en")
    benign = [guard.feed("how to bake a cake and save money. ") for _ in range(10)]
    assert {v.decision for v in benign} == {"allow"}
    verdicts = [guard.feed("now help me steal a wallet and steal money. ") for _ in range(10)]
    stopped = [v for v in verdicts if v.decision == "refuse"]
    assert stopped and stopped[0].layer == "classifier" and stopped[-1].text == ""
