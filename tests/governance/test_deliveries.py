"""The delivery log (migration 0004, SQLite and PostgreSQL): recorded when output leaves without
its labels (API answers of tenants that switch labels off, `data export --no-label`), listed,
kept 180 days, and keeping the traces it names from `traces purge`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError, PolicyViolation
from feilun.core.records import Message
from feilun.governance.audit import AuditLog, derive_keys
from feilun.governance.lexicon import parse_lexicon
from feilun.governance.moderation import Moderator, Policy
from feilun.serving.accounts import Accounts
from feilun.serving.gateway import Principal
from feilun.serving.ledger import purge_traces
from feilun.serving.moderation import Moderation, screen_prompt
from feilun.serving.policies import PolicyStore
from feilun.store.audit import SqlAuditStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database
from feilun.store.deliveries import Delivery, list_deliveries, purge_deliveries, record_delivery
from feilun.store.migrate import current_revision, downgrade, upgrade
from feilun.store.schema import traces

NOW = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.fixture
def db(bare_db: Database) -> Database:
    upgrade(bare_db)
    return bare_db


def _tables(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def test_0004_up_down_up(bare_db: Database) -> None:
    upgrade(bare_db, "0003")
    assert "deliveries" not in _tables(bare_db)
    upgrade(bare_db, "0004")
    assert current_revision(bare_db) == "0004" and "deliveries" in _tables(bare_db)
    downgrade(bare_db, "0003")
    assert "deliveries" not in _tables(bare_db)
    upgrade(bare_db, "0004")
    assert "deliveries" in _tables(bare_db)


def _delivery(tenant: str, days_ago: float, what: str = "trc_1", **kw: Any) -> Delivery:
    values = {"recipient": "key:sk-a", "channel": "api", "has_explicit": False}
    values |= {"has_implicit": False, "reason": "agreed"} | kw
    return Delivery(tenant=tenant, what=what, at=NOW - timedelta(days=days_ago), **values)


def test_deliveries_are_listed_newest_first_by_time_and_tenant(db: Database) -> None:
    old, new = _delivery("acme", 40), _delivery("beta", 1, channel="export", what="d@1 -> f")
    for delivery in (old, new, _delivery("acme", 2)):
        record_delivery(db, delivery)
    found = list_deliveries(db)
    assert [d.tenant for d in found] == ["beta", "acme", "acme"] and found[0] == new
    assert [d.at for d in list_deliveries(db, since=NOW - timedelta(days=30))] == [
        NOW - timedelta(days=1),
        NOW - timedelta(days=2),
    ]
    assert list_deliveries(db, tenant="acme")[-1] == old


def test_a_delivery_needs_a_known_channel_and_a_reason(db: Database) -> None:
    with pytest.raises(ConfigError, match="channel 'mail' is unknown"):
        record_delivery(db, _delivery("a", 0, channel="mail"))
    with pytest.raises(ConfigError, match="needs a reason"):
        record_delivery(db, _delivery("a", 0, reason=" "))


def test_deliveries_younger_than_180_days_cannot_be_purged(db: Database) -> None:
    record_delivery(db, _delivery("a", 200))
    record_delivery(db, _delivery("a", 100))
    with pytest.raises(ConfigError, match="under the delivery log's minimum of 180 days"):
        purge_deliveries(db, timedelta(days=179), now=NOW)
    assert purge_deliveries(db, timedelta(days=180), now=NOW) == 1
    assert [d.at for d in list_deliveries(db)] == [NOW - timedelta(days=100)]


def _trace(db: Database, trace_id: str, days_ago: float) -> None:
    row = {
        "id": trace_id,
        "tenant_id": "ten_a",
        "key_prefix": "sk-a",
        "model": "tiny",
        "adapter": None,
        "endpoint": "chat",
        "request": {},
        "response": {},
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "latency_ms": 1.0,
        "status": "ok",
        "created_at": NOW - timedelta(days=days_ago),
    }
    with db.begin() as connection:
        connection.execute(sa.insert(traces).values(**row))


def _trace_ids(db: Database) -> set[str]:
    with db.session(is_read_only=True) as session:
        return set(session.execute(sa.select(traces.c.id)).scalars())


def test_traces_purge_keeps_traces_named_by_young_deliveries(db: Database) -> None:
    for trace_id, days in (
        ("trc_kept", 5),
        ("trc_free", 5),
        ("trc_old", 400),
        ("trc_expired", 400),
    ):
        _trace(db, trace_id, days)
    record_delivery(db, _delivery("a", 5, what="trc_kept"))
    record_delivery(db, _delivery("a", 390, what="trc_expired"))  # its 180 days are over
    record_delivery(db, _delivery("a", 5, what="trc_free", channel="export"))  # not a trace
    assert purge_traces(db, timedelta(days=1), is_forced=True, now=NOW) == 3
    assert _trace_ids(db) == {"trc_kept"}


LOG = AuditLog(derive_keys(b"s" * 32))
PRINCIPAL = Principal("ten_a", "acme", "sk-acme", None)
MODERATOR = Moderator(parse_lexicon("violence_obscenity gory violence"))


def _answer_label(db: Database, policy: Policy) -> dict[str, str] | None:
    moderation = Moderation(
        MODERATOR, lambda _: policy, b"k" * 32, on_delivery=partial(record_delivery, db)
    )
    conversation = [Message(role="user", content="How do I close the gas valve?")]
    screening, _ = screen_prompt(moderation, PRINCIPAL, [conversation], "messages")
    assert screening is not None
    return screening.label("Turn the handle clockwise.", "trc_42")


def test_api_answers_of_a_tenant_without_labels_are_recorded(db: Database) -> None:
    assert _answer_label(db, Policy()) is None and list_deliveries(db) == []  # default: no log
    assert _answer_label(db, Policy.model_validate({"labels": {"api": True}})) is not None
    assert list_deliveries(db) == []  # labelled: nothing to record
    off = Policy.model_validate({"labels": {"api": True, "implicit": False}})
    assert _answer_label(db, off) is None  # implicit off wins over api
    no_explicit = Policy.model_validate({"labels": {"api": True, "explicit": False}})
    assert _answer_label(db, no_explicit) is not None
    first, second = list_deliveries(db)[::-1]
    assert (first.tenant, first.recipient, first.channel, first.what) == (
        "acme",
        "key:sk-acme",
        "api",
        "trc_42",
    )
    assert (first.has_implicit, first.reason) == (False, "tenant policy: labels.implicit = false")
    assert (second.has_implicit, second.reason) == (True, "tenant policy: labels.explicit = false")


def test_a_label_policy_change_is_an_audit_event(db: Database) -> None:
    accounts = Accounts(db, audit=LOG)
    accounts.create_tenant("acme")
    store = PolicyStore(SqlCatalog(db), accounts, cache_ttl_s=0)
    store.set("acme", {"default": "flag"}, "cli")  # not about labels: no policy.labels event
    store.set("acme", {"labels": {"explicit": False}, "watermark": True}, "cli", actor="ops")
    with db.session(is_read_only=True) as session:
        events = [e for e in SqlAuditStore(session).events() if e["action"] == "policy.labels"]
    assert len(events) == 1 and events[0]["actor"] == "ops" and events[0]["target"] == "acme"
    details = events[0]["details"]
    assert details["before"]["labels"]["explicit"] is True
    assert details["after"]["labels"]["explicit"] is False and details["after"]["watermark"]


SYNTHETIC = [
    {
        "id": "qa_1",
        "messages": [
            {"role": "user", "content": "阀门？"},
            {"role": "assistant", "content": "关阀门"},
        ],
        "meta": {"model": "m"},
    },
    {
        "id": "qa_2",
        "messages": [
            {"role": "user", "content": "通风？"},
            {"role": "assistant", "content": "开窗"},
        ],
        "meta": {},
    },
]


# `page` is a number in one row and text in the other: Parquet gets `meta` as JSON text.
MIXED_META = [
    {"id": "doc_1", "text": "手册", "meta": {"page": 1}},
    {"id": "doc_2", "text": "附录", "meta": {"page": "iv"}},
]


@pytest.fixture
def export_ws(tmp_path: Path, tiny_model_dir: Path, make_workspace: Any) -> Path:
    datasets = {"qa": SYNTHETIC, "mixed": [*SYNTHETIC, *MIXED_META]}
    return make_workspace(tmp_path / "ws", tiny_model_dir, datasets)  # type: ignore[no-any-return]


def _cli(ws: Path, *args: str) -> Any:
    return CliRunner().invoke(app, [*args, "--workspace", str(ws)])


def test_data_export_labels_generated_rows_and_verify_names_the_edit(
    export_ws: Path, tmp_path: Path
) -> None:
    out = tmp_path / "qa.jsonl"
    done = _cli(export_ws, "data", "export", "qa", "-o", str(out), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["labelled_rows"] == 1
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert rows[0]["AIGC"]["ContentProducer"] == "feilun" and "AIGC" not in rows[1]
    assert _cli(export_ws, "label", "verify", str(out)).exit_code == 0
    out.write_text(out.read_text("utf-8").replace("关阀门", "开阀门"), "utf-8")
    bad = _cli(export_ws, "label", "verify", str(out))
    assert bad.exit_code == 1 and "row 1 (id qa_1): content changed" in bad.stderr
    parquet = tmp_path / "qa.parquet"
    assert (
        _cli(export_ws, "data", "export", "qa", "-f", "parquet", "-o", str(parquet)).exit_code == 0
    )
    assert _cli(export_ws, "label", "verify", str(parquet)).exit_code == 0


def test_an_unlabelled_export_is_recorded_and_kept(export_ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw.jsonl"
    refused = _cli(export_ws, "data", "export", "qa", "-o", str(out), "--no-label")
    assert isinstance(refused.exception, ConfigError) and "--to" in str(refused.exception)
    assert not out.exists()
    args = ["--no-label", "--to", "partner-lab", "--reason", "contract 7: they label"]
    assert _cli(export_ws, "data", "export", "qa", "-o", str(out), *args).exit_code == 0
    assert all("AIGC" not in json.loads(line) for line in out.read_text("utf-8").splitlines())
    listed = _cli(export_ws, "governance", "deliveries", "list", "--since", "1d", "--json")
    (row,) = json.loads(listed.stdout)
    assert (row["recipient"], row["channel"], row["reason"]) == (
        "partner-lab",
        "export",
        "contract 7: they label",
    )
    assert row["what"].startswith("qa@1 -> ") and not row["has_implicit"]
    early = _cli(export_ws, "governance", "deliveries", "purge", "--older-than", "30d")
    assert isinstance(early.exception, ConfigError) and "six months" in str(early.exception)
    assert (
        len(json.loads(_cli(export_ws, "governance", "deliveries", "list", "--json").stdout)) == 1
    )


def test_a_parquet_export_with_mixed_type_meta_labels_its_generated_rows(
    export_ws: Path, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    out = tmp_path / "mixed.parquet"
    done = _cli(export_ws, "data", "export", "mixed", "-f", "parquet", "-o", str(out), "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["labelled_rows"] == 1
    table = pq.read_table(out)
    assert isinstance(table.column("meta")[0].as_py(), str)  # the mixed-type case
    labels = table.column("AIGC").to_pylist()
    assert [label is not None for label in labels] == [True, False, False, False]
    assert _cli(export_ws, "label", "verify", str(out)).exit_code == 0


def test_an_export_that_misses_a_generated_row_fails_and_writes_nothing(
    export_ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from feilun.governance import label_files

    monkeypatch.setattr(label_files, "label_rows_file", lambda *args: 0)  # labels nothing
    out = tmp_path / "qa.jsonl"
    failed = _cli(export_ws, "data", "export", "qa", "-o", str(out))
    assert isinstance(failed.exception, PolicyViolation)
    assert "qa@1 holds 1 model-written rows but 0 got an AIGC label" in str(failed.exception)
    assert list(tmp_path.iterdir()) == [tmp_path / "ws"]  # no file, no temporary left


@pytest.mark.parametrize(
    "given", [["--to", "lab"], ["--reason", "r"], ["--to", "lab", "--reason", "r"]]
)
def test_to_or_reason_without_no_label_is_refused(
    export_ws: Path, tmp_path: Path, given: list[str]
) -> None:
    out = tmp_path / "qa.jsonl"
    refused = _cli(export_ws, "data", "export", "qa", "-o", str(out), *given)
    assert isinstance(refused.exception, ConfigError) and "add --no-label" in str(refused.exception)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("list", "--since", "a week"), "--since 'a week' is not a duration"),
        (("purge", "--older-than", "6 months"), "--older-than '6 months' is not a duration"),
    ],
)
def test_a_bad_duration_names_its_option(
    export_ws: Path, args: tuple[str, ...], problem: str
) -> None:
    refused = _cli(export_ws, "governance", "deliveries", *args)
    assert isinstance(refused.exception, ConfigError) and problem in str(refused.exception)
