"""`feilun label add|verify`: AIGC implicit labels (GB 45438-2025) in exported files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json

app = typer.Typer(help="Add and verify AIGC labels on files.", no_args_is_help=True)

KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        help="Label key (default: the workspace's safety/label.key).",
        show_default=False,
    ),
]


def _key_path(key_file: Path | None, workspace: Path | None, must_exist: bool) -> Path:
    from feilun.core.settings import resolve_workspace
    from feilun.governance.workspace import LABEL_KEY_FILE, safety_dir

    if key_file is not None:
        return key_file
    return safety_dir(resolve_workspace(workspace), must_exist=must_exist) / LABEL_KEY_FILE


@app.command("add")
def add(
    file: Annotated[
        Path,
        typer.Argument(
            help="A .json, .md, .docx, .pdf, .jsonl or .parquet file of generated content.",
            exists=True,
            dir_okay=False,
        ),
    ],
    producer: Annotated[str, typer.Option(help="ContentProducer: your service or filing code.")],
    out: Annotated[
        Path | None, typer.Option(help="Write here (default: in place).", show_default=False)
    ] = None,
    explicit: Annotated[
        bool,
        typer.Option(
            help="Also add the visible label text (.md: last line; .docx: last paragraph)."
        ),
    ] = False,
    explicit_text: Annotated[
        str | None, typer.Option(help="The visible label text.", show_default=False)
    ] = None,
    key_file: KeyFile = None,
    workspace: options.Workspace = None,
) -> None:
    """Embed a signed implicit label: JSON `AIGC` key, Markdown front matter, DOCX/PDF metadata.

    Row files (.jsonl, .parquet) get a label on every row, under `AIGC`.
    """
    from feilun.governance.label_files import (
        EXPLICIT_LABEL,
        EXPLICIT_SUFFIXES,
        check_suffix,
        label_file,
    )
    from feilun.governance.labels import load_or_create_key

    check_suffix(file)  # before a key is created for nothing
    key = load_or_create_key(_key_path(key_file, workspace, must_exist=True))
    text = (explicit_text or EXPLICIT_LABEL) if explicit else None
    target = label_file(file, key, producer, out, text)
    typer.echo(f"labelled {target}")
    if text and file.suffix.lower() not in EXPLICIT_SUFFIXES:
        typer.secho(
            f"note: no visible label added to a {file.suffix} file (only .md and .docx)",
            fg=typer.colors.YELLOW,
            err=True,
        )


@app.command("verify")
def verify(
    file: Annotated[
        Path,
        typer.Argument(
            help="A labelled .json, .md, .docx, .pdf, .jsonl or .parquet file.",
            exists=True,
            dir_okay=False,
        ),
    ],
    key_file: KeyFile = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Check that FILE carries an AIGC label whose signature matches; exit 1 naming what changed.

    Row files (.jsonl, .parquet) are checked row by row; the first bad row is named.
    """
    from feilun.governance.label_files import check_suffix, verify_file
    from feilun.governance.labels import read_key

    check_suffix(file)
    key = read_key(_key_path(key_file, workspace, must_exist=False))
    check = verify_file(file, key)
    if json:
        print_json(
            {
                "file": str(file),
                "is_valid": check.is_valid,
                "problem": check.problem,
                "changed": list(check.changed),
                "label": check.label,
            }
        )
    elif check.is_valid:
        typer.echo(f"{file}: AIGC label present and signature valid")
    else:
        typer.secho(f"{file}: {check.problem}", fg=typer.colors.RED, err=True)
    if not check.is_valid:
        raise typer.Exit(1)
