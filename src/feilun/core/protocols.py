"""The few interfaces stages share, and the value types that cross them.

Stage packages never import each other: they talk through these Protocols (three methods
at most each) and the records of `core.records`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol, runtime_checkable

import pydantic

from feilun.core.records import Message, Record


class GenerationParams(pydantic.BaseModel):
    """Decoding settings shared by every ChatModel."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    max_tokens: int = pydantic.Field(256, ge=1, description="Most new tokens to generate.")
    temperature: float = pydantic.Field(0.0, ge=0.0, le=2.0, description="0 means greedy.")
    top_p: float = pydantic.Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: list[str] = pydantic.Field(default_factory=list, description="Stop strings.")
    seed: int | None = pydantic.Field(None, description="Seed for reproducible sampling.")
    watermark: bool | None = pydantic.Field(
        None,
        description="Watermark the answer (a runtime that can); None: the deployment default.",
    )


FinishReason = Literal["stop", "length", "content_filter"]


class Usage(pydantic.BaseModel):
    """Token counts from the serving model's own tokenizer (or the upstream's report)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


class Hit(pydantic.BaseModel):
    """One retrieved chunk with its score."""

    chunk_id: str
    score: float
    text: str = ""


class Citation(pydantic.BaseModel):
    """A passage an answer rests on, numbered as the answer cites it ([1], [2] and so on)."""

    number: int
    chunk_id: str
    document_id: str = ""
    document: str = pydantic.Field("", description="The document's name in its knowledge base.")
    title: str = ""
    page: int | None = None
    heading_path: list[str] = pydantic.Field(default_factory=list)
    quote: str = pydantic.Field("", description="The passage's words the answer leans on.")
    score: float = 0.0


class Grounding(pydantic.BaseModel):
    """Where a retrieval-augmented answer comes from, and what in it nothing supports."""

    citations: list[Citation] = pydantic.Field(default_factory=list)
    unsupported_sentences: list[str] = pydantic.Field(
        default_factory=list, description="Answer sentences no cited passage supports."
    )
    checked_sentences: int = pydantic.Field(
        0, ge=0, description="Answer sentences long enough for the check to judge."
    )
    answered: bool = pydantic.Field(
        True, description="False when nothing relevant was found and the model was not asked."
    )
    retrieved: list[Hit] = pydantic.Field(
        default_factory=list,
        exclude=True,
        description="What retrieval returned, best first (in process only: not serialised).",
    )


class Completion(pydantic.BaseModel):
    """A finished generation with its usage and timings."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    prefill_s: float = 0.0
    decode_s: float = 0.0
    grounding: Grounding | None = None


class Delta(pydantic.BaseModel):
    """One streamed piece of a generation; the last one carries finish_reason and usage.

    `completion_tokens` counts the tokens generated up to and including this piece, so a
    stream cut short (a client disconnect) is billed for exactly what was sent.
    """

    text: str
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    grounding: Grounding | None = None  # on the last piece of a retrieval-augmented answer


@runtime_checkable
class ChatModel(Protocol):
    """Anything that answers chat messages: a local runtime, an upstream server, an agent."""

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """Generate a whole answer."""
        ...

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Generate an answer piece by piece; the last Delta has finish_reason and usage."""
        ...

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens these messages take, chat template included."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into fixed-size vectors."""

    name: str
    dimension: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One L2-normalised vector per text."""
        ...


@runtime_checkable
class Retriever(Protocol):
    """Finds the chunks most relevant to a query."""

    def retrieve(self, query: str, k: int) -> list[Hit]:
        """The best `k` hits, best first."""
        ...


class Grade(pydantic.BaseModel):
    """A grader's verdict on one answer."""

    score: float
    detail: str = ""


@runtime_checkable
class Grader(Protocol):
    """Scores an answer against a reference."""

    def grade(self, answer: str, reference: str) -> Grade:
        """Score in [0, 1] with an explanation."""
        ...


@runtime_checkable
class Catalog(Protocol):
    """Where records are kept: the metadata database, seen by the stages."""

    def save(self, record: Record) -> Record:
        """Store a record; a record with the same kind, name and version is replaced."""
        ...

    def find(self, kind: str, name: str | None = None, version: int | None = None) -> list[Record]:
        """Records of `kind` (optionally one name, one version), newest version first."""
        ...

    def remove(self, kind: str, name: str) -> int:
        """Delete every version of `name`; the number removed."""
        ...
