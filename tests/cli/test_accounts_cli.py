"""`feilun tenants|keys|quotas|prices|usage|traces` in-process, on a fresh workspace."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from feilun.cli.accounts import (
    keys_app,
    prices_app,
    quotas_app,
    tenants_app,
    traces_app,
    usage_app,
)
from feilun.core.errors import ConfigError, NotFound

app = typer.Typer()
for name, sub in [
    ("tenants", tenants_app),
    ("keys", keys_app),
    ("quotas", quotas_app),
    ("prices", prices_app),
    ("usage", usage_app),
    ("traces", traces_app),
]:
    app.add_typer(sub, name=name)


@pytest.fixture
def workspace(env: dict[str, str]) -> dict[str, str]:
    from feilun.app.workspace import init_workspace

    ws, _ = init_workspace(Path(env["FEILUN_WORKSPACE"]), env)
    ws.close()
    return env


def invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _serve(env: dict[str, str], secret: str, prompt: int, completion: int) -> str:
    """Bill one request through the ledger, as the gateway would."""
    from feilun.app.workspace import opened
    from feilun.serving.accounts import Accounts
    from feilun.serving.gateway import Outcome
    from feilun.serving.ledger import SqlLedger
    from feilun.serving.limits.memory import MemoryLimiter

    with opened(None, env) as ws:
        ledger = SqlLedger(ws.database, Accounts(ws.database), MemoryLimiter())
        admission = ledger.admit(ledger.authenticate(f"Bearer {secret}"), "tiny", 100)
        outcome = Outcome(
            "tiny@1",
            None,
            {"q": 1},
            {"a": 2},
            prompt,
            completion,
            "tokenizer",
            "ok",
            "chat.completions",
        )
        ledger.settle(admission, outcome)
    return admission.trace_id


def test_help_of_every_command() -> None:
    for args in (
        ["tenants", "create"],
        ["keys", "create"],
        ["keys", "revoke"],
        ["quotas", "set"],
        ["prices", "set"],
        ["usage", "report"],
        ["traces", "list"],
        ["traces", "show"],
    ):
        result = CliRunner().invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output


def test_tenants_keys_quotas_prices_usage_traces(workspace: dict[str, str]) -> None:
    env = workspace
    assert "created tenant acme" in invoke(env, "tenants", "create", "acme")
    tenants = json.loads(invoke(env, "tenants", "list", "--json"))
    assert [t["name"] for t in tenants] == ["acme"]
    created = json.loads(
        invoke(
            env,
            "keys",
            "create",
            "--tenant",
            "acme",
            "--models",
            "tiny,other",
            "--expires",
            "30d",
            "--json",
        )
    )
    secret = created["key"]
    assert created["models"] == ["tiny", "other"] and created["expires_at"]
    plain = CliRunner().invoke(app, ["keys", "create", "--tenant", "acme", "--admin"], env=env)
    assert plain.stdout.strip().startswith("fl-") and "not shown again" in plain.stderr
    keys = json.loads(invoke(env, "keys", "list", "--tenant", "acme", "--json"))
    assert len(keys) == 2 and all("key" not in k for k in keys)
    assert secret not in invoke(env, "keys", "list")
    out = invoke(env, "quotas", "set", "--tenant", "acme", "--tokens-per-day", "5000")
    assert "tokens_per_day=5000" in out and "requests_per_minute=unlimited" in out
    quota = json.loads(
        invoke(env, "quotas", "set", "--tenant", "acme", "--requests-per-minute", "60", "--json")
    )
    assert (quota["tokens_per_day"], quota["requests_per_minute"]) == (5000, 60)  # kept
    assert "input" in invoke(
        env, "prices", "set", "tiny", "--input-per-1k", "0.0005", "--output-per-1k", "0.0015"
    )
    trace_id = _serve(env, secret, 1000, 200)
    _serve(env, secret, 10, 20)
    report: dict[str, Any] = json.loads(
        invoke(
            env, "usage", "report", "--tenant", "acme", "--since", "2000-01-01", "--format", "json"
        )
    )
    (row,) = report["rows"]
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"]) == (2, 1010, 220)
    assert row["cost"] == "0.000835000000"  # 1.01 × 0.0005 + 0.22 × 0.0015
    rows = list(
        csv.DictReader(
            io.StringIO(
                invoke(
                    env,
                    "usage",
                    "report",
                    "--tenant",
                    "acme",
                    "--since",
                    "2000-01-01",
                    "--format",
                    "csv",
                )
            )
        )
    )
    assert rows[0]["model"] == "tiny@1" and rows[0]["cost"] == "0.000835000000"
    assert "total: 1230 tokens" in invoke(
        env, "usage", "report", "--tenant", "acme", "--since", "2000-01-01"
    )
    listed = json.loads(invoke(env, "traces", "list", "--tenant", "acme", "--json"))
    assert len(listed) == 2 and trace_id in {t["id"] for t in listed}
    shown = json.loads(invoke(env, "traces", "show", trace_id))
    assert shown["request"] == {"q": 1} and shown["key_prefix"] == secret[:11]
    assert "revoked" in invoke(env, "keys", "revoke", secret[:11])


def test_bad_input_raises_feilun_errors(workspace: dict[str, str]) -> None:
    env = workspace
    runner = CliRunner()
    with pytest.raises(NotFound, match="no tenant 'ghost'"):
        runner.invoke(app, ["keys", "create", "--tenant", "ghost"], env=env, catch_exceptions=False)
    invoke(env, "tenants", "create", "acme")
    with pytest.raises(ConfigError, match="expires '30 days' is not a duration"):
        runner.invoke(
            app,
            ["keys", "create", "--tenant", "acme", "--expires", "30 days"],
            env=env,
            catch_exceptions=False,
        )
    with pytest.raises(ConfigError, match="since '2026/11/01' is not a date"):
        runner.invoke(
            app,
            ["usage", "report", "--tenant", "acme", "--since", "2026/11/01"],
            env=env,
            catch_exceptions=False,
        )
    with pytest.raises(ConfigError, match="--older-than '3 days' is not a duration"):
        runner.invoke(
            app, ["traces", "purge", "--older-than", "3 days"], env=env, catch_exceptions=False
        )
    with pytest.raises(NotFound, match="no trace 'trc_nope'"):
        runner.invoke(app, ["traces", "show", "trc_nope"], env=env, catch_exceptions=False)
