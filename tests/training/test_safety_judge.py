"""The safety judge on a tiny random Llama: it learns a toy split, saves, loads, fails clearly."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.app.moderation import with_judge
from feilun.app.workspace import opened
from feilun.cli.main import app
from feilun.core.errors import ArtifactError
from feilun.governance.classifier import train_classifier
from feilun.governance.moderation import Moderator, Policy, detect_language
from feilun.governance.workspace import build_moderator
from feilun.models.safety_judge import Backbone, SafetyJudge, load_judge
from feilun.models.sources.safetensors import SOURCE
from feilun.training.safety_judge import default_layer, train_judge

UNSAFE_WORDS = ["bomb", "poison", "weapon", "steal", "attack", "kill"]
BENIGN_WORDS = ["capital", "river", "recipe", "garden", "music", "flower"]


def _rows(seed: int, n: int) -> list[tuple[str, str]]:
    """Texts of three words from one set: `unsafe` or `safe` by the set."""
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        words = UNSAFE_WORDS if k % 2 else BENIGN_WORDS
        rows.append((" ".join(rng.choices(words, k=3)), "unsafe" if k % 2 else "safe"))
    return rows


def _judge(folder: Path, cache: Path, **options: object) -> SafetyJudge:
    model, tokenizer = SOURCE.load(str(folder), cache)
    backbone = Backbone(model, tokenizer, default_layer(model))
    meta = {"base": {"source": "safetensors", "location": str(folder)}}
    return train_judge(_rows(0, 80), "safe", backbone, meta=meta, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def judge(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SafetyJudge:
    return _judge(tiny_model_dir, tmp_path_factory.mktemp("cache"))


def test_learns_a_toy_split_and_its_thresholds(judge: SafetyJudge) -> None:
    held_out = _rows(1, 60)
    logits = judge.logits([t for t, _ in held_out])
    correct = sum(
        (s > 0) == (label == "unsafe") for s, (_, label) in zip(logits, held_out, strict=True)
    )
    assert correct / len(held_out) >= 0.9  # chance is 0.5
    assert set(judge.thresholds) == {"en"}  # no Chinese rows: no zh threshold
    assert judge.meta["validation"]["en"]["false_refusal"] <= 0.05


def test_moderator_refuses_by_the_judge(judge: SafetyJudge) -> None:
    moderator = Moderator(judge=judge)
    assert moderator.check("poison weapon bomb", is_prompt=True).decision == "refuse"
    assert moderator.check("garden river recipe", is_prompt=True).decision == "allow"


def test_save_and_load_give_identical_scores(
    judge: SafetyJudge, tmp_path: Path, tiny_model_dir: Path
) -> None:
    judge.save(tmp_path / "judge.json")
    loaded = load_judge(tmp_path / "judge.json", tmp_path / "cache", detect_language)
    texts = [t for t, _ in _rows(2, 10)]
    assert loaded.logits(texts) == judge.logits(texts)
    assert loaded.predict(texts[0], "en") == judge.predict(texts[0], "en")
    assert loaded.thresholds == judge.thresholds


def test_stacked_on_the_ngram_classifier(tiny_model_dir: Path, tmp_path: Path) -> None:
    ngram = train_classifier(_rows(0, 80), "safe", epochs=20, target_false_refusal=None)
    stacked = _judge(tiny_model_dir, tmp_path / "cache", ngram=ngram, ngram_epochs=20)
    assert stacked.stack is not None and stacked.second is not None
    stacked.save(tmp_path / "judge.json")
    with pytest.raises(ArtifactError, match="stacked on the n-gram"):
        load_judge(tmp_path / "judge.json", tmp_path / "cache", detect_language)
    loaded = load_judge(
        tmp_path / "judge.json", tmp_path / "cache", detect_language, stacked.second
    )
    assert loaded.logits(["bomb poison steal"]) == stacked.logits(["bomb poison steal"])


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("not json", "cannot read the safety judge"),
        ('{"format": "feilun-safety-classifier/2"}', "is not a Feilun safety judge"),
        ('{"format": "feilun-safety-judge/1", "layer": 2}', "damaged safety judge"),
    ],
)
def test_a_bad_file_fails_clearly(tmp_path: Path, content: str, error: str) -> None:
    path = tmp_path / "judge.json"
    path.write_text(content)
    with pytest.raises(ArtifactError, match=error):
        load_judge(path, tmp_path / "cache", detect_language)


def test_a_head_for_another_base_fails_clearly(judge: SafetyJudge, tmp_path: Path) -> None:
    judge.save(tmp_path / "judge.json")
    values = json.loads((tmp_path / "judge.json").read_text())
    values["weights"] = values["weights"][:-1]
    (tmp_path / "judge.json").write_text(json.dumps(values))
    with pytest.raises(ArtifactError, match="another base model"):
        load_judge(tmp_path / "judge.json", tmp_path / "cache", detect_language)


def test_cli_trains_the_judge_and_serving_loads_it(tiny_workspace: Path, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    rows = [{"text": t, "label": y} for t, y in _rows(0, 80)]
    data.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    train = ["safety", "train", "--file", str(data), "--epochs", "20", "--workspace"]
    result = CliRunner().invoke(app, [*train, str(tiny_workspace), "--base", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)["judge"]
    assert shown["base"]["ref"] == "tiny@1" and shown["layer"] == 1
    with opened(tiny_workspace) as ws:
        moderator = with_judge(ws, build_moderator(ws.path))
        assert isinstance(moderator.judge, SafetyJudge)
        refused = moderator.check("bomb poison kill", is_prompt=True)
        assert (refused.decision, refused.layer) == ("refuse", "judge")
        assert moderator.check("garden music river", is_prompt=True).decision == "allow"
        answer = moderator.check("bomb poison kill")  # answers: the n-gram classifier
        assert answer.layer == "classifier"
        without = moderator.check("bomb poison kill", Policy(judge=False), is_prompt=True)
        assert without.layer == "classifier"
    checked = CliRunner().invoke(
        app, ["safety", "check", "bomb poison kill", "--workspace", str(tiny_workspace), "--json"]
    )
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["layer"] == "judge"
    again = CliRunner().invoke(app, [*train, str(tiny_workspace), "--epochs", "10"])
    assert again.exit_code == 0, again.output
    with opened(tiny_workspace) as ws, pytest.raises(ArtifactError, match="another classifier"):
        with_judge(ws, build_moderator(ws.path))
