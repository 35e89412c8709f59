"""`feilun governance filing-pack|deliveries`: filing documents, the delivery log."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

app = typer.Typer(help="Regulatory filing support.", no_args_is_help=True)
deliveries_app = typer.Typer(
    help="The delivery log: who received output without its AIGC labels (kept ≥ 180 days).",
    no_args_is_help=True,
)
app.add_typer(deliveries_app, name="deliveries")


@app.command("filing-pack")
def filing_pack(
    model: Annotated[str, typer.Option("--model", "-m", help="Model or adapter reference.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the pack into.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Model card, lineage, safety results, lexicon, labels, policy, templates, Annex IV draft."""
    from feilun.app.filing import write_filing_pack
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        written = write_filing_pack(ws, model, out)
    if json:
        print_json({"files": [str(path) for path in written]})
        return
    typer.echo(f"filing pack for {model} in {out}:")
    for path in written:
        typer.echo(f"  {path.name}")


@deliveries_app.command("list")
def list_deliveries(
    since: Annotated[
        str | None,
        typer.Option(help="Only the last DURATION, e.g. 30d or 12h.", show_default=False),
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant (by name).", show_default=False)
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Deliveries of unlabelled output, newest first: when, who, channel, what, why."""
    from feilun.app.workspace import opened
    from feilun.serving.accounts import parse_duration
    from feilun.store.deliveries import list_deliveries as listed

    start = datetime.now(UTC) - parse_duration(since, what="--since") if since else None
    with opened(workspace) as ws:
        found = listed(ws.database, since=start, tenant=tenant)
    if json:
        print_json([d.to_json() for d in found])
        return
    rows = [
        (
            d.at.isoformat(timespec="seconds"),
            d.tenant or "-",
            d.recipient,
            d.channel,
            d.what,
            "yes" if d.has_explicit else "no",
            "yes" if d.has_implicit else "no",
            d.reason,
        )
        for d in found
    ]
    columns = ["at", "tenant", "recipient", "channel", "what", "explicit", "implicit", "reason"]
    print_table(f"deliveries ({len(found)})", columns, rows)


@deliveries_app.command("purge")
def purge_deliveries(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete deliveries older than this (≥ 180d).")
    ],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Delete deliveries older than the cutoff; anything under 180 days is refused."""
    from feilun.app.audit import record
    from feilun.app.workspace import opened
    from feilun.serving.accounts import parse_duration
    from feilun.store.deliveries import purge_deliveries as purge

    age = parse_duration(older_than, what="--older-than")
    with opened(workspace) as ws:
        deleted = purge(ws.database, age)
        record(ws, "deliveries.purged", "deliveries", {"older_than": older_than, "rows": deleted})
    if json:
        print_json({"deleted": deleted, "older_than": older_than})
        return
    typer.echo(f"deleted {deleted} deliveries older than {older_than}")
