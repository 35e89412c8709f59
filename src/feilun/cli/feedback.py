"""`feilun feedback add|list|stats|curate`: ratings and corrections of served answers.

`add` records feedback as the operator (no API key); `curate` turns traces and feedback into
new dataset versions (`feilun.app.curation`) and exits 1 with the reason when none is made.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table
from feilun.core.errors import ConfigError

app = typer.Typer(
    help="Record feedback on served answers and curate it into datasets.", no_args_is_help=True
)

Tenant = Annotated[
    str | None, typer.Option("--tenant", "-t", help="Tenant name or id (default: all).")
]
Since = Annotated[
    str | None,
    typer.Option(help="Only feedback from this UTC day or time on (YYYY-MM-DD[THH:MM])."),
]


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError as e:
        raise ConfigError(
            f"--since {value!r} is not a date or time", "write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from e
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _tenant_id(ws: Any, tenant: str | None) -> str | None:
    from feilun.serving.accounts import Accounts

    return None if tenant is None else Accounts(ws.database).get_tenant(tenant).id


@app.command("add")
def add(
    trace_id: Annotated[str, typer.Argument(help="Trace id (the x-feilun-trace-id header).")],
    rating: Annotated[str, typer.Option("--rating", "-r", help="up, down, or 1-5 stars.")],
    correction: Annotated[
        str | None, typer.Option("--correction", "-c", help="What the answer should have been.")
    ] = None,
    tags: Annotated[
        list[str] | None, typer.Option("--tag", help="A label; repeat for more.")
    ] = None,
    comment: Annotated[str | None, typer.Option(help="Free text.")] = None,
    client_id: Annotated[
        str | None, typer.Option("--client-id", help="Idempotency key: a repeat adds nothing.")
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option("--tenant", "-t", help="Refuse unless the trace is this tenant's."),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Rate a served answer as the operator (the trace's tenant is recorded)."""
    import pydantic

    from feilun.app.workspace import opened
    from feilun.serving.feedback import OPERATOR, FeedbackIn, FeedbackStore, parse_rating

    value: str | int = int(rating) if rating.strip().isdigit() else rating
    parse_rating(value)  # names the allowed values before anything is opened
    try:
        entry = FeedbackIn(
            trace_id=trace_id,
            rating=value,
            corrected_answer=correction,
            tags=tags or [],
            comment=comment,
            client_id=client_id,
        )
    except pydantic.ValidationError as e:
        problems = "; ".join(f"{err['loc'][0]}: {err['msg']}" for err in e.errors())
        raise ConfigError(
            f"invalid feedback: {problems}", "see `feilun feedback add --help`"
        ) from e
    with opened(workspace) as ws:
        row, is_new = FeedbackStore(ws.database).record(entry, _tenant_id(ws, tenant), OPERATOR)
    if json:
        print_json({**row.to_json(), "is_new": is_new})
        return
    verb = "recorded" if is_new else "already recorded (same client id)"
    typer.echo(f"{verb} feedback {row.id}: {row.to_json()['label']} on trace {row.trace_id}")


@app.command("list")
def list_feedback(
    tenant: Tenant = None,
    since: Since = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """List the newest feedback."""
    from feilun.app.workspace import opened
    from feilun.serving.feedback import FeedbackStore

    with opened(workspace) as ws:
        rows = FeedbackStore(ws.database).find(_tenant_id(ws, tenant), _since(since), limit)
    if json:
        print_json([row.to_json() for row in rows])
        return
    table = [
        (
            row.id,
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            row.trace_id,
            row.to_json()["label"],
            "yes" if row.corrected_answer else "",
            ", ".join(row.tags),
            row.key_prefix,
        )
        for row in rows
    ]
    columns = ["id", "time (UTC)", "trace", "rating", "corrected", "tags", "key"]
    print_table("feedback", columns, table)


@app.command("stats")
def stats(
    tenant: Tenant = None,
    since: Since = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Count feedback by rating, tenant, model and day, and the share with corrections."""
    from feilun.app.workspace import opened
    from feilun.serving.feedback import FeedbackStore

    with opened(workspace) as ws:
        found = FeedbackStore(ws.database).stats(_tenant_id(ws, tenant), _since(since))
    summary = found.to_json()
    if json:
        print_json(summary)
        return
    typer.echo(
        f"{found.total} feedback, {found.with_correction} with a correction "
        f"({found.correction_share:.0%})"
    )
    for name in ("by_rating", "by_tenant", "by_model", "by_day"):
        rows = list(summary[name].items())
        if rows:
            print_table(name.replace("_", " "), [name.removeprefix("by_"), "count"], rows)


@app.command("curate")
def curate(
    rules: Annotated[
        Path, typer.Option("--rules", "-r", help="Rules YAML, e.g. recipes/flywheel/curate.yaml.")
    ],
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset", "-d", help="Dataset name: saves NAME, NAME-pref and NAME-eval versions."
        ),
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Argument(help="Rule overrides, e.g. eval.share=0.3.", show_default=False),
    ] = None,
    since: Since = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Curate traces and feedback into SFT, preference and eval dataset versions."""
    from feilun.app.curation import curate_feedback
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        result = curate_feedback(ws, rules, dataset, since=_since(since), overrides=overrides or [])
    datasets = {
        "sft": result.sft_dataset,
        "preference": result.preference_dataset,
        "eval": result.eval_dataset,
    }
    if json:
        print_json(
            {
                "datasets": datasets,
                "counts": result.counts,
                "reason": result.reason,
                "reports": result.reports,
            }
        )
    else:
        _print_curation(result.reports, result.counts)
        for kind, ref in datasets.items():
            typer.echo(f"{kind}: {ref or '-'}")
    if result.reason is not None:
        typer.secho(f"error: nothing curated: {result.reason}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _print_curation(reports: dict[str, list[dict[str, Any]]], counts: dict[str, int]) -> None:
    rows = [
        (
            kind,
            report["operator"],
            report["count_in"],
            report["count_out"],
            ", ".join(f"{k} {v}" for k, v in report["removed_by_reason"].items()),
        )
        for kind, steps in reports.items()
        for report in steps
        if report["count_in"]  # a filter that saw nothing has nothing to say
    ]
    print_table("curation", ["dataset", "filter", "in", "out", "removed"], rows)
    skipped = {k: v for k, v in counts.items() if k.startswith("skipped_")}
    typer.echo(
        f"{counts['feedback']} feedback on {counts['traces']} traces"
        + (
            "; not used: " + ", ".join(f"{k[8:]} {v}" for k, v in skipped.items())
            if skipped
            else ""
        )
    )
