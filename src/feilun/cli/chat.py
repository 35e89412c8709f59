"""`feilun chat MODEL ["question"]`: stream an answer, or open a REPL with history."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, spinner

if TYPE_CHECKING:
    from feilun.core.protocols import ChatModel, GenerationParams
    from feilun.core.records import Message

_REPL_HELP = "Type a message; /reset clears the conversation, /exit (or Ctrl-D) quits."


def _stream_answer(model: ChatModel, messages: list[Message], params: GenerationParams) -> str:
    """Print the answer as it is generated, then the explicit AIGC label; return the text."""
    from feilun.governance.label_files import EXPLICIT_LABEL

    parts = []
    for delta in model.stream(messages, params):
        parts.append(delta.text)
        typer.echo(delta.text, nl=False)
    typer.echo()
    typer.secho(EXPLICIT_LABEL, dim=True)
    return "".join(parts)


def _repl(model: ChatModel, system: list[Message], params: GenerationParams, history: Path) -> None:
    import readline

    from feilun.core.records import Message

    if history.is_file():
        readline.read_history_file(history)
    typer.echo(_REPL_HELP)
    messages = list(system)
    try:
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                typer.echo()
                break
            if line in ("/exit", "/quit"):
                break
            if line == "/reset":
                messages = list(system)
                continue
            if not line:
                continue
            messages.append(Message(role="user", content=line))
            answer = _stream_answer(model, messages, params)
            messages.append(Message(role="assistant", content=answer))
    finally:
        readline.write_history_file(history)


def chat(
    model: Annotated[str, typer.Argument(help="Model name, name@version or alias.")],
    question: Annotated[str | None, typer.Argument(help="Omit to open a REPL.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt.")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, max=2.0, help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0, help="Nucleus sampling mass.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(min=1, help="Most new tokens.")] = 256,
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible sampling.")] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Chat with a model: stream one answer, or talk in a REPL."""
    from feilun.app.workspace import opened
    from feilun.core.protocols import GenerationParams
    from feilun.core.records import Message

    params = GenerationParams(
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed
    )
    system_messages = [Message(role="system", content=system)] if system else []
    with opened(workspace) as ws:
        started = time.perf_counter()
        with spinner(f"loading {model}…"):
            chat_model = ws.models.open(model)
        load_s = time.perf_counter() - started
        if question is None:
            _repl(chat_model, system_messages, params, ws.path / ".chat_history")
            return
        messages = [*system_messages, Message(role="user", content=question)]
        if not json:
            _stream_answer(chat_model, messages, params)
            return
        started = time.perf_counter()
        completion = chat_model.chat(messages, params)
        total_s = time.perf_counter() - started
    usage = completion.usage
    print_json(
        {
            "model": model,
            "answer": completion.text,
            "finish_reason": completion.finish_reason,
            "usage": {**usage.model_dump(), "total_tokens": usage.total_tokens},
            "timings": {
                "load_s": round(load_s, 3),
                "prefill_s": round(completion.prefill_s, 3),
                "decode_s": round(completion.decode_s, 3),
                "total_s": round(total_s, 3),
                "decode_tokens_per_s": round(usage.completion_tokens / completion.decode_s, 1)
                if completion.decode_s
                else None,
            },
        }
    )
