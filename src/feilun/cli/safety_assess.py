"""`feilun safety assess`: TC260-style refusal, false refusal and pass rate of a model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table
from feilun.core.errors import ConfigError

if TYPE_CHECKING:
    from feilun.evaluation.assess import BankItem
    from feilun.evaluation.items import Loaded


def _bank(help_text: str) -> Any:
    return typer.Option(help=help_text, show_default=False)


def _field(bank: str) -> Any:
    return typer.Option(help=f"Field (JSONL key or CSV column) of the {bank} bank's text.")


def assess(
    model: Annotated[str, typer.Option(help="Model to assess: name, alias or base:adapter.")],
    refuse: Annotated[
        Path | None, _bank("Should-refuse bank (JSONL or CSV): unsafe prompts.")
    ] = None,
    answer: Annotated[
        Path | None, _bank("Should-answer bank (JSONL or CSV): benign prompts.")
    ] = None,
    generated: Annotated[
        Path | None,
        _bank("Generated-content bank (JSONL or CSV): prompts whose answers are judged."),
    ] = None,
    refuse_field: Annotated[str, _field("should-refuse")] = "prompt",
    answer_field: Annotated[str, _field("should-answer")] = "prompt",
    generated_field: Annotated[str, _field("generated-content")] = "prompt",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Seeded sample per bank.", show_default=False)
    ] = None,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most new tokens per answer.")] = 64,
    moderate_input: Annotated[
        bool,
        typer.Option(help="Let input moderation refuse first, as the served service does."),
    ] = False,
    policy: Annotated[Path | None, typer.Option(help="Policy YAML.", show_default=False)] = None,
    classifier: Annotated[
        Path | None,
        typer.Option(help="Classifier JSON (default: the workspace's).", show_default=False),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Refusal rate, false-refusal rate and pass rate against TC260's limits; saved as an eval."""
    from feilun.app.workspace import opened
    from feilun.cli.output import spinner
    from feilun.cli.safety import _moderator
    from feilun.evaluation.assess import AssessConfig, load_bank, run_assessment
    from feilun.evaluation.suites import EvalContext

    files = {"refuse": (refuse, refuse_field), "answer": (answer, answer_field)}
    files["generated"] = (generated, generated_field)
    banks: dict[str, Loaded[BankItem]] = {
        bank: load_bank(path, field) for bank, (path, field) in files.items() if path is not None
    }
    if not banks:
        raise ConfigError(
            "no bank given", "give --refuse, --answer and/or --generated (JSONL or CSV files)"
        )
    moderator = _moderator(workspace, policy, None, classifier, use_classifier=True)
    config = AssessConfig(max_tokens=max_tokens, limit=limit, moderate_input=moderate_input)
    total = sum(min(len(b.items), limit or len(b.items)) for b in banks.values())
    with opened(workspace) as ws, spinner(f"assessing {model}: {total} prompts"):
        context = EvalContext(ws.catalog, ws.artifacts, ws.models)
        report, payload = run_assessment(context, model, banks, moderator, config)
    results = payload["tc260"]
    warnings = [
        f"warning: the {r['bank']} bank has {r['n']} scored items; TC260 asks for at least "
        f"{r['min_items']}"
        for r in results
        if not r["enough_items"]
    ]
    if json:
        print_json({"report": report.ref, "id": report.id, "model": report.model, "banks": results})
        for line in warnings:
            typer.secho(line, fg=typer.colors.YELLOW, err=True)
        return
    rows = [
        (
            r["bank"],
            r["n"],
            r["metric"],
            f"{r['value']:.1%}",
            f"{r['low']:.1%}–{r['high']:.1%}",
            f"{'≥' if r['limit'] == 'at least' else '≤'} {r['threshold']:.0%}",
            "yes" if r["meets"] else "NO",
        )
        for r in results
    ]
    columns = ["bank", "n", "metric", "rate", "95% CI", "TC260", "meets"]
    print_table(f"safety assessment of {report.model}", columns, rows)
    for line in warnings:
        typer.secho(line, fg=typer.colors.YELLOW, err=True)
    typer.echo(f"saved as eval report {report.ref} ({report.id}); see `feilun eval show`")
