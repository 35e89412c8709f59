"""`feilun feedback add|list|stats|curate` on a workspace with real traces (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import FeilunError

from .conftest import Shop

RULES = Path(__file__).parents[2] / "recipes" / "flywheel" / "curate.yaml"


def _feilun(shop: Shop, *args: str, code: int = 0) -> str:
    """The command's output (and the message of a FeilunError, which `feilun` prints)."""
    result = CliRunner().invoke(app, [*args, "--workspace", str(shop.workspace.path)])
    assert result.exit_code == code, result.output
    if isinstance(result.exception, FeilunError):
        return f"error: {result.exception}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.output


def test_add_list_stats_and_curate(shop: Shop) -> None:
    trace = shop.trace("调压箱多久巡检一次？", "每年一次。")
    other = shop.trace("What is the gas emergency number?", "911.", tenant="beta")
    added = json.loads(
        _feilun(
            shop,
            *("feedback", "add", trace, "--rating", "down", "--correction", "每月巡检一次。"),
            *("--tag", "wrong_interval", "--client-id", "ops-1", "--json"),
        )
    )
    assert (added["label"], added["tenant_id"], added["key_prefix"]) == (
        "down",
        added["tenant_id"],
        "operator",
    )
    again = _feilun(shop, "feedback", "add", trace, "--rating", "up", "--client-id", "ops-1")
    assert again.startswith(f"already recorded (same client id) feedback {added['id']}")
    assert "recorded feedback" in _feilun(shop, "feedback", "add", other, "-r", "4")

    refused = _feilun(shop, "feedback", "add", other, "-r", "up", "--tenant", "acme", code=1)
    assert f"no trace {other!r}" in refused
    bad = _feilun(shop, "feedback", "add", trace, "-r", "9", code=1)
    assert "rating 9 is not allowed" in bad and "'up', 'down', or a number of stars" in bad

    listed = json.loads(_feilun(shop, "feedback", "list", "--tenant", "acme", "--json"))
    assert [row["id"] for row in listed] == [added["id"]]
    stats = json.loads(_feilun(shop, "feedback", "stats", "--json"))
    assert stats["total"] == 2 and stats["correction_share"] == 0.5
    assert stats["by_tenant"] == {"acme": 1, "beta": 1}
    assert stats["by_rating"] == {"4★": 1, "down": 1} and stats["by_model"] == {"tiny@1": 2}
    assert "2 feedback, 1 with a correction (50%)" in _feilun(shop, "feedback", "stats")

    curated = _feilun(shop, "feedback", "curate", "-r", str(RULES), "-d", "gas", "eval.share=0")
    assert "sft: gas@1" in curated and "preference: gas-pref@1" in curated
    empty = _feilun(shop, "feedback", "curate", "-r", str(RULES), "-d", "gas", code=1)
    assert "nothing curated" in empty and "already_curated" in empty
