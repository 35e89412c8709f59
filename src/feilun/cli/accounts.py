"""`feilun tenants|keys|quotas|prices|usage|traces`: who may use the gateway, and what they used.

Each command opens the workspace, calls one function of `feilun.serving` and prints.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

if TYPE_CHECKING:
    from feilun.app.workspace import Workspace as OpenWorkspace
    from feilun.serving.accounts import Accounts

tenants_app = typer.Typer(help="Create and list tenants.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
quotas_app = typer.Typer(help="Set a tenant's token and request limits.", no_args_is_help=True)
prices_app = typer.Typer(help="Set what a model's tokens cost.", no_args_is_help=True)
usage_app = typer.Typer(help="Report tokens and cost per tenant.", no_args_is_help=True)
traces_app = typer.Typer(help="Read stored traces of served requests.", no_args_is_help=True)

Tenant = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name (or id).")]


class Format(StrEnum):
    """Output formats of `feilun usage report`."""

    table = "table"
    csv = "csv"
    json = "json"


@contextmanager
def _accounts(workspace: Any) -> Iterator[tuple[OpenWorkspace, Accounts]]:
    from feilun.app.audit import audit_log
    from feilun.app.workspace import opened
    from feilun.serving.accounts import Accounts

    with opened(workspace) as ws:
        yield ws, Accounts(ws.database, audit=audit_log(ws))


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "-"


@tenants_app.command("create")
def create_tenant(
    name: Annotated[str, typer.Argument(help="Unique tenant name.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Create a tenant."""
    with _accounts(workspace) as (_, accounts):
        tenant = accounts.create_tenant(name)
    if json:
        print_json({"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at})
    else:
        typer.echo(f"created tenant {tenant.name} ({tenant.id})")


@tenants_app.command("list")
def list_tenants(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """List tenants."""
    with _accounts(workspace) as (_, accounts):
        tenants = accounts.list_tenants()
    if json:
        print_json([{"id": t.id, "name": t.name, "created_at": t.created_at} for t in tenants])
        return
    print_table(
        "tenants", ["name", "id", "created"], [(t.name, t.id, _time(t.created_at)) for t in tenants]
    )


@keys_app.command("create")
def create_key(
    tenant: Tenant,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models the key may use (default: all).")
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime such as 30d, 12h or 2w (default: never).")
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Allow the key to use /admin.")] = False,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Create an API key; its secret is printed once and never stored."""
    allowed = models.split(",") if models is not None else None
    with _accounts(workspace) as (_, accounts):
        secret, key = accounts.create_key(tenant, allowed, expires, is_admin=admin)
    if json:
        print_json({"key": secret, **key.to_json()})
        return
    typer.echo(secret)
    typer.echo(
        f"API key {key.prefix} for tenant {key.tenant_name}; copy it now, it is not shown again",
        err=True,
    )


@keys_app.command("list")
def list_keys(
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant name (default: all).")
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """List API keys (prefixes only; secrets are never stored)."""
    with _accounts(workspace) as (_, accounts):
        keys = accounts.list_keys(tenant)
    if json:
        print_json([k.to_json() for k in keys])
        return
    rows = [
        (
            k.prefix,
            k.tenant_name,
            ",".join(k.models) if k.models is not None else "*",
            "yes" if k.is_admin else "",
            _time(k.created_at),
            _time(k.expires_at),
            _time(k.revoked_at),
        )
        for k in keys
    ]
    columns = ["prefix", "tenant", "models", "admin", "created", "expires", "revoked"]
    print_table("API keys", columns, rows)


@keys_app.command("revoke")
def revoke_key(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, e.g. fl-1a2b3c4d.")],
    workspace: options.Workspace = None,
) -> None:
    """Revoke an API key (it stops working within a second)."""
    with _accounts(workspace) as (_, accounts):
        key = accounts.revoke_key(prefix)
    typer.echo(f"revoked {key.prefix} of tenant {key.tenant_name}")


@quotas_app.command("set")
def set_quota(
    tenant: Tenant,
    tokens_per_day: Annotated[
        int | None, typer.Option(help="Prompt + completion tokens per UTC day (default: keep).")
    ] = None,
    requests_per_minute: Annotated[
        int | None, typer.Option(help="Requests per sliding minute (default: keep).")
    ] = None,
    unlimited: Annotated[bool, typer.Option("--unlimited", help="Remove both limits.")] = False,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Set a tenant's quota; an option left out keeps its current value."""
    with _accounts(workspace) as (_, accounts):
        current = accounts.get_quota(accounts.get_tenant(tenant).id)
        if unlimited:
            tokens_per_day = requests_per_minute = None
        else:
            tokens_per_day = (
                tokens_per_day if tokens_per_day is not None else current.tokens_per_day
            )
            requests_per_minute = (
                requests_per_minute
                if requests_per_minute is not None
                else current.requests_per_minute
            )
        quota = accounts.set_quota(tenant, tokens_per_day, requests_per_minute)
    if json:
        print_json(vars(quota))
        return
    typer.echo(
        f"quota of {tenant}: tokens_per_day={quota.tokens_per_day or 'unlimited'}, "
        f"requests_per_minute={quota.requests_per_minute or 'unlimited'}"
    )


@prices_app.command("set")
def set_price(
    model: Annotated[str, typer.Argument(help="Model name or alias (without @version).")],
    input_per_1k: Annotated[str, typer.Option(help="Price of 1000 prompt tokens.")],
    output_per_1k: Annotated[str, typer.Option(help="Price of 1000 completion tokens.")],
    workspace: options.Workspace = None,
) -> None:
    """Set what 1000 input and output tokens of a model cost."""
    with _accounts(workspace) as (_, accounts):
        price = accounts.set_price(model, input_per_1k, output_per_1k)
    typer.echo(
        f"price of {price.model}: {price.input_per_1k} per 1k input, "
        f"{price.output_per_1k} per 1k output tokens"
    )


@prices_app.command("list")
def list_prices(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """List model prices."""
    with _accounts(workspace) as (_, accounts):
        prices = accounts.list_prices()
    if json:
        print_json(
            [
                {
                    "model": p.model,
                    "input_per_1k": str(p.input_per_1k),
                    "output_per_1k": str(p.output_per_1k),
                }
                for p in prices
            ]
        )
        return
    rows = [(p.model, p.input_per_1k, p.output_per_1k) for p in prices]
    print_table("prices", ["model", "input per 1k", "output per 1k"], rows)


@usage_app.command("report")
def usage_report(
    tenant: Tenant,
    since: Annotated[
        str | None, typer.Option(help="First UTC day, YYYY-MM-DD (default: 1st of this month).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day (default: today).")] = None,
    output_format: Annotated[
        Format, typer.Option("--format", help="Output format.")
    ] = Format.table,
    workspace: options.Workspace = None,
) -> None:
    """Tokens and cost of a tenant per model and per UTC day."""
    from feilun.serving.reads import usage_report as report

    first = since or datetime.now(UTC).date().replace(day=1).isoformat()
    with _accounts(workspace) as (ws, accounts):
        owner = accounts.get_tenant(tenant)
        rows = report(ws.database, owner.id, first, until)
    if output_format is Format.json:
        print_json(
            {
                "tenant": owner.name,
                "since": first,
                "until": until,
                "rows": [r.to_json() for r in rows],
            }
        )
        return
    columns = ["day", "model", "requests", "prompt_tokens", "completion_tokens", "cost"]
    table = [
        (r.day, r.model, r.requests, r.prompt_tokens, r.completion_tokens, r.cost) for r in rows
    ]
    if output_format is Format.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(table)
        typer.echo(buffer.getvalue(), nl=False)
        return
    total = sum((r.cost for r in rows), Decimal(0))
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    print_table(f"usage of {owner.name} since {first}", columns, table)
    typer.echo(f"total: {tokens} tokens, cost {total}")


@traces_app.command("list")
def list_traces(
    tenant: Annotated[
        str | None, typer.Option("--tenant", "-t", help="Tenant name (default: all).")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """List the newest traces."""
    from feilun.serving.reads import list_traces as newest

    with _accounts(workspace) as (ws, accounts):
        tenant_id = accounts.get_tenant(tenant).id if tenant is not None else None
        traces = newest(ws.database, tenant_id, limit)
    if json:
        print_json([t.to_json() for t in traces])
        return
    rows = [
        (
            t.id,
            _time(t.created_at),
            t.key_prefix,
            t.model,
            t.endpoint,
            f"{t.prompt_tokens}+{t.completion_tokens}",
            f"{t.latency_ms:.0f}",
            t.status,
        )
        for t in traces
    ]
    columns = ["id", "time", "key", "model", "endpoint", "tokens", "ms", "status"]
    print_table("traces", columns, rows)


@traces_app.command("purge")
def purge_traces(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete traces older than this (e.g. 180d).")
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Allow a cutoff under the 180-day delivery-log minimum.")
    ] = False,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Delete old traces (usage rows stay for billing); at least 180 days are kept.

    Even with --force, a trace an unlabelled delivery of the last 180 days names is kept
    (`feilun governance deliveries list`).
    """
    from feilun.serving.accounts import parse_duration
    from feilun.serving.ledger import purge_traces as purge

    age = parse_duration(older_than, what="--older-than")
    with _accounts(workspace) as (ws, _):
        deleted = purge(ws.database, age, is_forced=force)
    if json:
        print_json({"deleted": deleted, "older_than": older_than})
        return
    typer.echo(f"deleted {deleted} traces older than {older_than}; usage rows kept")


@traces_app.command("show")
def show_trace(
    trace_id: Annotated[str, typer.Argument(help="Trace id (the x-feilun-trace-id header).")],
    workspace: options.Workspace = None,
) -> None:
    """Print one trace as JSON: request, response, model, tokens, latency, key prefix."""
    from feilun.serving.reads import get_trace

    with _accounts(workspace) as (ws, _):
        trace = get_trace(ws.database, trace_id, None)
    print_json(trace.to_json())
