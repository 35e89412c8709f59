"""`feilun serve`: the OpenAI-compatible gateway over the workspace's models."""

from __future__ import annotations

from typing import Annotated

import typer

from feilun.cli import options


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workspace: options.Workspace = None,
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models and /admin."""
    import uvicorn

    from feilun.app.serve import build_server_app
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        app = build_server_app(ws)
        typer.secho(f"serving {ws.path.resolve()} on http://{host}:{port}/v1", err=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")
