"""`feilun watermark detect`: whether a text carries this deployment's watermark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table, spinner
from feilun.core.errors import BadInput, ConfigError

app = typer.Typer(help="Detect the text watermark.", no_args_is_help=True)


@app.command("detect")
def detect(
    text: Annotated[str | None, typer.Argument(help="Text to test.", show_default=False)] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="UTF-8 text file to test.", show_default=False)
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Model that generated it (default: the packaged chat model)."),
    ] = None,
    threshold: Annotated[float, typer.Option(help="z-score at which to call it marked.")] = 4.0,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """z-score, green fraction and verdict of TEXT or --file, with the workspace's key and γ."""
    from feilun.app.workspace import opened
    from feilun.governance.watermark import deployment_watermark
    from feilun.governance.watermark import detect as detect_ids
    from feilun.models.packaged import SMOLLM2

    if (text is None) == (file is None):
        raise ConfigError("give TEXT or --file F (one of them)", "see `feilun watermark --help`")
    if file is not None:
        try:
            text = file.read_bytes().decode("utf-8-sig")  # exactly: no newline translation
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"cannot read {str(file)!r}: {e}", "give a UTF-8 text file") from e
    assert text is not None
    with opened(workspace) as ws:
        watermark = deployment_watermark(ws.settings)
        ref = model or SMOLLM2.name
        with spinner(f"loading {ref}'s tokenizer"):
            chat_model = ws.models.open(ref)
        encode = getattr(chat_model, "encode", None)
        if encode is None:
            raise ConfigError(
                f"model {ref!r} has no local tokenizer to re-tokenise the text",
                "give --model a local (transformers runtime) model: the one that generated it",
            )
        result = detect_ids(encode(text), watermark, threshold=threshold)
    if json:
        print_json({"model": ref, **result.to_dict()})
        return
    rows = [
        ("z", f"{result.z:.2f}"),
        ("green fraction", f"{result.green_fraction:.3f} (γ = {result.gamma:g})"),
        ("tokens scored", result.scored),
        ("verdict", "watermarked" if result.is_watermarked else "not detected"),
    ]
    print_table(f"watermark ({ref})", ["", "value"], rows)
    typer.echo(result.message)
