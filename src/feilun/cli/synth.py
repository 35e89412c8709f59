"""`feilun data synth-qa`: grounded question/answer instruction data from a collection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table

if TYPE_CHECKING:
    from feilun.core.protocols import ChatModel
    from feilun.data.synth import ProgressFn


class Language(StrEnum):
    """Template languages of `feilun data synth-qa`."""

    auto = "auto"
    zh = "zh"
    en = "en"


class Writer(StrEnum):
    """Who writes the pairs of `feilun data synth-qa`."""

    model = "model"
    rules = "rules"
    auto = "auto"


def synth_qa(
    collection: Annotated[str, typer.Argument(help="Collection of ingested documents.")],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset name; saved as its next version.")
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Model name, name@version or alias (default: the packaged SmolLM2).",
            show_default=False,
        ),
    ] = None,
    per_chunk: Annotated[
        int, typer.Option(min=1, max=20, help="Question/answer pairs kept at most per passage.")
    ] = 3,
    max_passages: Annotated[
        int, typer.Option(min=0, help="Passages picked by the seed; 0 takes every passage.")
    ] = 20,
    seed: Annotated[
        int, typer.Option(help="Seeds the passage sample, every model call and the rules' choice.")
    ] = 0,
    language: Annotated[
        Language, typer.Option(help="Template language: each passage's own (auto), zh or en.")
    ] = Language.auto,
    writer: Annotated[
        Writer,
        typer.Option(
            help="Who writes pairs: the model; the rules (definitions, numbers, obligations; "
            "no model); auto: the rules for passages where every model candidate failed."
        ),
    ] = Writer.auto,
    system: Annotated[
        str | None,
        typer.Option(help="System prompt put in every example.", show_default=False),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Write question/answer pairs grounded in passages of a collection, by a model or rules."""
    from feilun.app.workspace import opened
    from feilun.core.errors import ConfigError
    from feilun.data.datasets import check_dataset_name
    from feilun.data.synth import SynthParams, synthesize_dataset
    from feilun.models.packaged import SMOLLM2

    check_dataset_name(dataset)
    is_rules = writer is Writer.rules
    if is_rules and model is not None:
        raise ConfigError(
            f"--model {model} is not used by --writer rules",
            "drop --model, or pass --writer auto to have the model write first",
        )
    with opened(workspace) as ws:
        ref = None if is_rules else ws.models.resolve(model or SMOLLM2.name).ref
        params = SynthParams(
            model=ref,
            writer=writer.value,
            per_chunk=per_chunk,
            max_passages=max_passages or None,
            seed=seed,
            language=language.value,
            system_prompt=system,
        )

        with _progress_bar(quiet=json) as (describe, progress):

            def open_model() -> ChatModel:
                assert ref is not None  # the rules alone never open a model
                describe(f"loading {ref}")
                chat_model = ws.models.open(ref)
                describe("passages")
                return chat_model

            saved, result = synthesize_dataset(
                ws.catalog, ws.artifacts, collection, dataset, open_model, params, progress
            )
    summary = result.summary()
    if json:
        print_json({"dataset": {"ref": saved.ref, **saved.model_dump(mode="json")}, **summary})
        return
    rows = [
        ("passages", summary["passages"]),
        ("model calls", summary["model_calls"]),
        ("candidates", summary["generated"]),
        ("kept", summary["kept"]),
        *((f"kept by {k}", v) for k, v in summary["kept_by_writer"].items()),
        *((f"rejected: {k}", v) for k, v in summary["rejected_by_reason"].items()),
    ]
    print_table(f"synth-qa {collection} with {params.written_by}", ["", "count"], rows)
    typer.echo(
        f"saved dataset {saved.ref}: {saved.count} pairs, "
        f"{saved.meta['rejected_count']} rejected, content {saved.content_hash}"
    )
    if saved.meta["rejected_count"]:
        typer.echo(f"see the rejected candidates with `feilun data show {saved.ref} --rejected`")


@contextmanager
def _progress_bar(quiet: bool) -> Iterator[tuple[Callable[[str], None], ProgressFn | None]]:
    """A Rich bar over the passages on stderr, and a function that sets its label."""
    if quiet:
        yield (lambda _: None), None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task("documents", total=None)

        def describe(label: str) -> None:
            bar.update(task, description=label)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield describe, update
