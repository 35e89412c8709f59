"""`feilun models list|add|show|rm|alias|merge`: the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table, spinner
from feilun.core.errors import ConfigError

app = typer.Typer(help="Register, inspect and remove models.", no_args_is_help=True)


def _size(parameters: int) -> str:
    if parameters >= 1_000_000_000:
        return f"{parameters / 1e9:.1f}B"
    return f"{parameters / 1e6:.0f}M" if parameters else "?"


@app.command("list")
def list_models(workspace: options.Workspace = None, json: options.Json = False) -> None:
    """List registered base models and aliases."""
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        models = ws.models.list_models()
        aliases = {a.name: a.target for a in ws.models.aliases()}
    if json:
        print_json(
            {
                "models": [m.model_dump(mode="json", exclude={"chat_template"}) for m in models],
                "aliases": aliases,
            }
        )
        return
    rows = [
        (
            m.name,
            m.version,
            m.architecture,
            _size(m.parameters),
            m.context_length or "?",
            m.source,
            m.runtime,
        )
        for m in models
    ]
    print_table(
        "models",
        ["name", "version", "architecture", "params", "context", "source", "runtime"],
        rows,
    )
    for alias, target in sorted(aliases.items()):
        typer.echo(f"alias {alias} → {target}")


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Name to register the model under.")],
    gguf: Annotated[Path | None, typer.Option(help="A GGUF file.")] = None,
    path: Annotated[Path | None, typer.Option(help="A save_pretrained folder.")] = None,
    hub: Annotated[str | None, typer.Option(help="A hub id such as org/model.")] = None,
    upstream: Annotated[
        str | None, typer.Option(help="Base URL of an OpenAI-compatible server.")
    ] = None,
    upstream_model: Annotated[
        str | None, typer.Option(help="Model id on the upstream (default: NAME).")
    ] = None,
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the upstream's API key.")
    ] = "OPENAI_API_KEY",
    description: Annotated[str, typer.Option(help="Free text for the model card.")] = "",
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Register a model from exactly one of --gguf, --path, --hub or --upstream."""
    from feilun.app.workspace import opened

    given = {
        "gguf": str(gguf) if gguf else None,
        "safetensors": str(path) if path else None,
        "hub": hub,
        "upstream": upstream,
    }
    chosen = [(source, location) for source, location in given.items() if location]
    if len(chosen) != 1:
        raise ConfigError(
            f"models add needs exactly one source, got {len(chosen)}",
            "pass one of --gguf FILE, --path DIR, --hub ID or --upstream URL",
        )
    source, location = chosen[0]
    meta = (
        {"upstream_model": upstream_model or name, "api_key_env": api_key_env} if upstream else {}
    )
    with opened(workspace) as ws, spinner(f"inspecting {location}…"):
        record = ws.models.add(name, source, location, description=description, meta=meta)
    if json:
        print_json(record.model_dump(mode="json"))
    else:
        typer.echo(f"registered {record.ref} ({record.architecture}, {_size(record.parameters)})")


@app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="name, name@version, alias or base:adapter")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Print a model card: architecture, size, context, chat template, source, digest, lineage."""
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        card = ws.models.card(ref)
    if json:
        print_json(card)
        return
    template = card.pop("chat_template") or "(none: pass one when registering)"
    for key, value in card.items():
        typer.echo(f"{key:>15}: {value}")
    typer.echo(f"{'chat_template':>15}:\n{template}")


@app.command("rm")
def remove(
    name: Annotated[str, typer.Argument(help="Model, adapter or alias name.")],
    workspace: options.Workspace = None,
) -> None:
    """Remove every version of a model (refused while an alias or adapter uses it)."""
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        count = ws.models.remove(name)
    typer.echo(f"removed {name} ({count} record{'s' if count != 1 else ''})")


@app.command("alias")
def alias(
    name: Annotated[str, typer.Argument(help="Alias to set, e.g. prod.")],
    target: Annotated[str, typer.Argument(help="What it points at: name@version or base:adapter.")],
    workspace: options.Workspace = None,
) -> None:
    """Point an alias at a model (moved atomically if it exists)."""
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        record = ws.models.set_alias(name, target)
    typer.echo(f"alias {record.name} → {record.target}")


@app.command("merge")
def merge(
    ref: Annotated[str, typer.Argument(help="The adapter on its base: BASE:ADAPTER[@version].")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for the merged model.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Fold an adapter into its base model's weights: a full safetensors model folder."""
    from feilun.app.workspace import opened
    from feilun.models.merge import write_merged

    with opened(workspace) as ws, spinner(f"merging {ref}…"):
        resolved = ws.models.with_files(ws.models.resolve(ref))
        folder = write_merged(resolved, ws.models.cache_dir, out)
    if json:
        print_json({"ref": resolved.ref, "out": str(folder.resolve())})
        return
    typer.echo(
        f"merged {resolved.ref} into {folder}; register it with "
        f"`feilun models add NAME --path {folder}`"
    )
