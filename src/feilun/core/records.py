"""Versioned artifact records: every arrow of the wheel is one of these.

Each record has an id, a kind, a creation time, `inputs` (ids of the records it was made
from: the lineage) and a content hash. Records are immutable; a change is a new record.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import pydantic

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(prefix: str) -> str:
    """Return a sortable unique id such as `adp_01j9z…`: time-ordered, then random."""
    millis = int(time.time() * 1000)
    stamp = "".join(_ALPHABET[(millis >> shift) & 31] for shift in range(45, -5, -5))
    tail = "".join(_ALPHABET[byte & 31] for byte in secrets.token_bytes(10))
    return f"{prefix}_{stamp}{tail}"


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def hash_content(value: Any) -> str:
    """sha256 of a JSON-serialisable value in canonical form (sorted keys, no spaces)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


class Record(pydantic.BaseModel):
    """Common fields of every artifact record."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    kind: ClassVar[str] = "record"
    id_prefix: ClassVar[str] = "rec"

    id: str = ""
    name: str = pydantic.Field("", description="Human name, unique per kind (with version).")
    version: int = pydantic.Field(1, ge=1, description="Version of `name`, 1 upward.")
    created_at: datetime = pydantic.Field(default_factory=utc_now)
    inputs: list[str] = pydantic.Field(default_factory=list, description="Ids of input records.")
    content_hash: str = ""
    meta: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.model_validator(mode="after")
    def _fill_identity(self) -> Record:
        # Frozen models cannot be assigned normally; identity is derived once at creation.
        if not self.id:
            object.__setattr__(self, "id", new_id(self.id_prefix))
        if not self.content_hash:
            payload = self.model_dump(
                mode="json", exclude={"id", "created_at", "content_hash", "version"}
            )
            object.__setattr__(self, "content_hash", hash_content(payload))
        return self

    @property
    def ref(self) -> str:
        """`name@version`, the way people and recipes refer to it."""
        return f"{self.name}@{self.version}"


class Document(Record):
    """One ingested file: its source, type and extracted text."""

    kind: ClassVar[str] = "document"
    id_prefix: ClassVar[str] = "doc"

    collection: str = ""
    source: str = ""
    source_id: str = pydantic.Field(
        "", description="The id its source gives it: a file's path, a JSONL record's `_id`."
    )
    sha256: str = pydantic.Field("", description="sha256 of the original file's bytes, if any.")
    media_type: str = ""
    language: str = ""
    title: str = ""
    pages: int = 0
    text: str = ""
    warnings: list[str] = pydantic.Field(default_factory=list)


class Quarantine(Record):
    """A file that could not be ingested, and what to do about it."""

    kind: ClassVar[str] = "quarantine"
    id_prefix: ClassVar[str] = "qua"

    collection: str = ""
    source: str = ""
    source_id: str = pydantic.Field("", description="sha256 of the file's bytes, if read.")
    file_type: str = ""
    reason: str = ""
    fix: str = ""


class Chunk(Record):
    """A span of a Document, the unit of retrieval."""

    kind: ClassVar[str] = "chunk"
    id_prefix: ClassVar[str] = "chk"
    document_id: str = ""
    text: str = ""
    page: int | None = None
    heading_path: list[str] = pydantic.Field(default_factory=list)
    start_char: int = 0
    end_char: int = 0


class Message(pydantic.BaseModel):
    """One chat turn in the OpenAI `messages` format."""

    model_config = pydantic.ConfigDict(frozen=True)
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Example(Record):
    """One training or evaluation example: chat messages, or a preference pair."""

    kind: ClassVar[str] = "example"
    id_prefix: ClassVar[str] = "exm"
    messages: list[Message] = pydantic.Field(default_factory=list)
    prompt: str = ""
    chosen: str = ""
    rejected: str = ""


class Dataset(Record):
    """An immutable, versioned set of examples stored as an artifact."""

    kind: ClassVar[str] = "dataset"
    id_prefix: ClassVar[str] = "dst"
    artifact: str = pydantic.Field("", description="Artifact-store digest of the JSONL body.")
    count: int = 0
    recipe: dict[str, Any] = pydantic.Field(default_factory=dict)


class Index(Record):
    """A built retrieval index over chunks (lexical, dense or both)."""

    kind: ClassVar[str] = "index"
    id_prefix: ClassVar[str] = "idx"
    artifact: str = ""
    embedder: str = ""
    chunk_count: int = 0


class BaseModel(Record):
    """A registered base model: where its weights are and what its card says."""

    kind: ClassVar[str] = "base_model"
    id_prefix: ClassVar[str] = "mdl"
    source: str = pydantic.Field(description="Registered source kind: gguf, safetensors, hub, …")
    location: str = pydantic.Field(description="Path, hub id or URL of the weights.")
    runtime: str = pydantic.Field("transformers", description="Registered runtime that serves it.")
    architecture: str = ""
    parameters: int = 0
    context_length: int = 0
    chat_template: str = ""
    sha256: str = ""
    description: str = ""


class Adapter(Record):
    """A trained adapter on a base model, with the chat template it was trained with."""

    kind: ClassVar[str] = "adapter"
    id_prefix: ClassVar[str] = "adp"
    base_model: str = ""
    artifact: str = ""
    method: str = "lora"
    chat_template: str = ""
    dataset: str = ""
    recipe_hash: str = ""
    metrics: dict[str, float] = pydantic.Field(default_factory=dict)


class Alias(Record):
    """A movable name (such as `prod`) pointing at a model or adapter reference."""

    kind: ClassVar[str] = "alias"
    id_prefix: ClassVar[str] = "als"
    target: str = ""


class EvalReport(Record):
    """Scores of one model on one suite, with everything needed to reproduce them."""

    kind: ClassVar[str] = "eval_report"
    id_prefix: ClassVar[str] = "evr"
    model: str = ""
    suite: str = ""
    scores: dict[str, float] = pydantic.Field(default_factory=dict)
    artifact: str = ""


class Trace(Record):
    """One served request and its response."""

    kind: ClassVar[str] = "trace"
    id_prefix: ClassVar[str] = "trc"
    model: str = ""
    tenant: str = ""
    request: dict[str, Any] = pydantic.Field(default_factory=dict)
    response: dict[str, Any] = pydantic.Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0


class Feedback(Record):
    """A user's rating or correction of one Trace."""

    kind: ClassVar[str] = "feedback"
    id_prefix: ClassVar[str] = "fbk"
    trace_id: str = ""
    rating: int = 0
    correction: str = ""
    comment: str = ""


class TenantPolicy(Record):
    """A tenant's governance policy (moderation, traces, labels); named by the tenant id."""

    kind: ClassVar[str] = "policy"
    id_prefix: ClassVar[str] = "pol"
    tenant: str = pydantic.Field("", description="Tenant name when set; empty: the default.")
    policy: dict[str, Any] = pydantic.Field(default_factory=dict, description="Policy values.")


RECORD_TYPES: dict[str, type[Record]] = {
    cls.kind: cls
    for cls in (
        Document,
        Quarantine,
        Chunk,
        Example,
        Dataset,
        Index,
        BaseModel,
        Adapter,
        Alias,
        EvalReport,
        Trace,
        Feedback,
        TenantPolicy,
    )
}
