"""`feilun audit list|export|verify|checkpoint`: the tamper-evident audit log."""

from __future__ import annotations

import json as jsonlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

app = typer.Typer(
    help="List, export and verify the tamper-evident audit log.", no_args_is_help=True
)

_DETAILS_WIDTH = 60


def _since(text: str | None) -> str | None:
    """`--since` as the ISO string `at` is compared with: a date, a time, or an age (7d)."""
    if text is None:
        return None
    from feilun.core.errors import ConfigError
    from feilun.serving.accounts import parse_duration

    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.now(UTC) - parse_duration(text)
        except ConfigError as e:
            raise ConfigError(
                f"--since {text!r} is neither a date, a time nor an age",
                "write 2026-11-01, 2026-11-01T08:00 or an age such as 12h or 7d",
            ) from e
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


@app.command("list")
def list_events(
    action: Annotated[
        str | None, typer.Option(help="Only this action, e.g. key.created.", show_default=False)
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="From this date/time (UTC) or age (7d, 12h) on.", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Newest events to show.")] = 50,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """The newest audit events, newest first."""
    from feilun.app.workspace import opened
    from feilun.store.audit import SqlAuditStore

    with opened(workspace) as ws, ws.database.session(is_read_only=True) as session:
        store = SqlAuditStore(session)
        events = list(
            store.events(action=action, since=_since(since), limit=limit, newest_first=True)
        )
    if json:
        print_json({"data": events})
        return
    rows = [
        (e["seq"], e["at"][:19].replace("T", " "), e["actor"], e["action"], e["target"], _short(e))
        for e in events
    ]
    print_table("audit events", ["seq", "at (UTC)", "actor", "action", "target", "details"], rows)


def _short(event: dict[str, Any]) -> str:
    text = jsonlib.dumps(event["details"], ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _DETAILS_WIDTH else text[: _DETAILS_WIDTH - 1] + "…"


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Write every event and checkpoint to a JSONL file (the export is itself an event)."""
    from feilun.app.audit import audit_log
    from feilun.app.workspace import opened
    from feilun.governance.audit import local_actor
    from feilun.store.audit import SqlAuditStore

    tmp = out.with_name(f".{out.name}.tmp")
    with opened(workspace) as ws:
        log = audit_log(ws)
        # One transaction: the export event commits only when the file was written.
        with ws.database.session() as session:
            store = SqlAuditStore(session)
            event = log.append(store, local_actor(), "audit.exported", str(out.resolve()))
            with tmp.open("w", encoding="utf-8") as f:
                for row in store.events():
                    f.write(jsonlib.dumps({"event": row}, ensure_ascii=False) + "\n")
                for row in store.checkpoints():
                    f.write(jsonlib.dumps({"checkpoint": row}, ensure_ascii=False) + "\n")
            tmp.replace(out)
    if json:
        print_json({"path": str(out), "events": event.seq})
        return
    typer.echo(f"exported {event.seq} audit events to {out}")


@app.command("verify")
def verify(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Check the chain and its signed checkpoints; exit 1 naming the first bad record."""
    from feilun.app.audit import audit_log
    from feilun.app.workspace import opened
    from feilun.store.audit import SqlAuditStore

    with opened(workspace) as ws:
        store_is_empty = _is_empty(ws)
        log = audit_log(ws, create_key=store_is_empty)
        with ws.database.session(is_read_only=True) as session:
            check = log.verify(SqlAuditStore(session))
    if json:
        print_json(
            {
                "valid": check.is_valid,
                "events_checked": check.checked,
                "checkpoints_checked": check.checkpoints,
                "first_bad_seq": check.first_bad_seq,
                "problem": check.problem,
            }
        )
    elif check.is_valid:
        typer.echo(
            f"audit log intact: {check.checked} events, {check.checkpoints} signed checkpoints"
        )
    else:
        typer.echo(
            f"audit log TAMPERED at event {check.first_bad_seq}: {check.problem} "
            f"({check.checked} events before it are intact)",
            err=True,
        )
    if not check.is_valid:
        raise typer.Exit(1)


def _is_empty(ws: Any) -> bool:
    from feilun.store.audit import SqlAuditStore

    with ws.database.session(is_read_only=True) as session:
        return SqlAuditStore(session).tip() is None


@app.command("checkpoint")
def checkpoint(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """Sign the chain's current tip now (also done every audit_checkpoint_every events)."""
    from feilun.app.audit import audit_log
    from feilun.app.workspace import opened
    from feilun.store.audit import SqlAuditStore

    with opened(workspace) as ws:
        log = audit_log(ws)
        with ws.database.session() as session:
            pin = log.checkpoint(SqlAuditStore(session))
    if json:
        print_json({"seq": pin.seq, "hash": pin.hash, "at": pin.at} if pin else None)
    elif pin is None:
        typer.echo("the audit log is empty: nothing to sign")
    else:
        typer.echo(f"checkpoint at event {pin.seq} ({pin.hash[:12]}…), signed {pin.at}")
