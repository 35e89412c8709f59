"""`feilun safety check|train` and `feilun safety lexicon import|list|test`, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import BadInput, ConfigError, WorkspaceError

XSTEST = Path("../shared/data/xstest/prompts.jsonl")


def invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One workspace for the module (`feilun init` runs migrations: seconds on a busy CPU)."""
    env = {"FEILUN_WORKSPACE": str(tmp_path_factory.mktemp("safety") / "ws")}
    invoke(env, "init")
    return env


def test_check_text_gives_verdict_category_and_layer(env: dict[str, str]) -> None:
    verdict = json.loads(invoke(env, "safety", "check", "怎样制作炸弹？", "--json"))
    assert verdict["decision"] == "refuse" and verdict["layer"] == "lexicon"
    assert verdict["category"] == "terrorism_extremism" and verdict["refusal"].startswith("抱歉")
    assert json.loads(invoke(env, "safety", "check", "", "--json"))["decision"] == "allow"


def test_check_file_gives_each_item_and_shares(env: dict[str, str]) -> None:
    out = json.loads(invoke(env, "safety", "check", "--file", str(XSTEST), "--json"))
    rows = [json.loads(line) for line in XSTEST.read_text(encoding="utf-8").splitlines()]
    assert out["total"] == len(rows) == len(out["items"])
    assert sum(out["counts"].values()) == len(rows)
    assert abs(sum(out["shares"].values()) - 1) < 1e-3
    assert [i["id"] for i in out["items"]] == [r["id"] for r in rows]
    table = invoke(env, "safety", "check", "--file", str(XSTEST))
    assert "share" in table and "allow" in table


def test_check_needs_exactly_one_input_and_a_known_field(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="give TEXT or --file"):
        invoke(env, "safety", "check")
    with pytest.raises(BadInput, match="prompts.jsonl:1: not a JSON object with the field 'q'"):
        invoke(env, "safety", "check", "--file", str(XSTEST), "--field", "q")


def test_lexicon_import_list_test(workspace: dict[str, str], tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# my list\n天然气偷接\n燃气表改装\n", encoding="utf-8")
    out = json.loads(
        invoke(
            workspace,
            "safety",
            "lexicon",
            "import",
            str(words),
            "--category",
            "other_prohibited",
            "--json",
        )
    )
    assert (out["read"], out["added"]) == (2, 2)
    again = invoke(
        workspace, "safety", "lexicon", "import", str(words), "--category", "A.1.8", "--json"
    )
    assert json.loads(again)["added"] == 0
    listed = json.loads(
        invoke(workspace, "safety", "lexicon", "list", "--category", "A.1.8", "--json")
    )
    assert {"天然气偷接", "燃气表改装"} <= set(listed["terms"])
    counts = json.loads(invoke(workspace, "safety", "lexicon", "list", "--json"))
    assert len(counts) == 32  # 31 risks and the exceptions
    hits = json.loads(invoke(workspace, "safety", "lexicon", "test", "教我燃气表改装", "--json"))
    assert hits == [{"start": 2, "end": 7, "term": "燃气表改装", "category": "other_prohibited"}]
    verdict = json.loads(invoke(workspace, "safety", "check", "燃气表改装方法", "--json"))
    assert verdict["decision"] == "refuse"


def test_lexicon_import_rejects_a_bad_file_whole(workspace: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("other_prohibited 偷气\nnonsense_category 某词\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt:2: unknown category 'nonsense_category'"):
        invoke(workspace, "safety", "lexicon", "import", str(bad))
    listed = json.loads(
        invoke(workspace, "safety", "lexicon", "list", "--category", "other_prohibited", "--json")
    )
    assert "偷气" not in listed["terms"]


def test_train_then_check_uses_the_classifier(workspace: dict[str, str], tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    rows = [
        {"t": "如何偷别人的钱包", "y": "bad"},
        {"t": "how to steal a wallet", "y": "bad"},
        {"t": "如何做红烧肉", "y": "ok"},
        {"t": "how to cook rice", "y": "ok"},
    ] * 6
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    out = json.loads(
        invoke(
            workspace,
            "safety",
            "train",
            "--file",
            str(data),
            "--text-field",
            "t",
            "--label-field",
            "y",
            "--benign-label",
            "ok",
            "--epochs",
            "60",
            "--json",
        )
    )
    assert Path(out["path"]).is_file() and out["labels"] == ["bad", "ok"]
    verdict = json.loads(invoke(workspace, "safety", "check", "steal a wallet please", "--json"))
    assert (verdict["decision"], verdict["layer"]) == ("refuse", "classifier")
    plain = invoke(
        workspace, "safety", "check", "steal a wallet please", "--no-classifier", "--json"
    )
    assert json.loads(plain)["decision"] == "allow"


def test_train_and_import_need_a_workspace(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no Feilun workspace"):
        invoke(env, "safety", "lexicon", "import", str(tmp_path / "x.txt"))
