"""`feilun governance filing-pack`: the documents a filing (备案) or Annex IV file needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json

app = typer.Typer(help="Regulatory filing support.", no_args_is_help=True)


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
