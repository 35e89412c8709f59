"""Embeddings with the gateway's embedder; usage is counted with the embedder's tokenizer."""

from __future__ import annotations

import base64
import struct
from typing import Any

import anyio
from fastapi.responses import Response
from starlette.requests import Request

from feilun.core.errors import ConfigError, NotFound
from feilun.core.protocols import Embedder
from feilun.governance.moderation import detect_language
from feilun.serving.moderation import redact_trace
from feilun.serving.openai.embeddings.protocol import EmbeddingRequest
from feilun.serving.openai.metering import admit, authenticate, gateway_of, new_meter
from feilun.serving.responses import FastJSONResponse


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """A vector as floats, or as base64 of little-endian float32 (what the openai client asks)."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def count_tokens(embedder: Embedder, texts: list[str]) -> int:
    """Tokens the embedder reads; embedders without a tokenizer count words."""
    counter = getattr(embedder, "count_tokens", None)
    if counter is None:
        return sum(len(t.split()) for t in texts)
    return int(counter(texts))


async def _embedder_for(request: Request, name: str) -> Embedder:
    load = gateway_of(request).embedder
    embedder = await anyio.to_thread.run_sync(load) if load is not None else None
    if embedder is None or embedder.name != name:
        available = embedder.name if embedder is not None else "none"
        error = NotFound(
            f"embedding model {name!r} does not exist; available: {available}",
            fix="pass one of the available embedding models as `model`",
        )
        error.param = "model"  # type: ignore[attr-defined]
        raise error
    return embedder


async def create_embeddings(request: Request, body: EmbeddingRequest) -> Response:
    """Embed the inputs; billed (prompt tokens only) before the response is returned."""
    principal = await authenticate(request)
    embedder = await _embedder_for(request, body.model)
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        error = ConfigError(
            f"dimensions={body.dimensions} is not available for {embedder.name}",
            fix=f"omit dimensions or set it to {embedder.dimension}",
        )
        error.param = "dimensions"  # type: ignore[attr-defined]
        raise error
    texts = body.texts()
    tokens = await anyio.to_thread.run_sync(count_tokens, embedder, texts)
    admission = await admit(request, principal, body.model, tokens)
    stored = body.model_dump(exclude_unset=True)
    moderation = gateway_of(request).moderation
    if moderation is not None:  # the trace keeps the inputs with PII masked, per policy
        policy = await anyio.to_thread.run_sync(moderation.policy_of, principal.tenant_id)
        stored = redact_trace(policy, stored, detect_language(" ".join(texts)[:2000]))
    meter = new_meter(request, admission, embedder.name, "embeddings", stored, "tokenizer")
    try:
        vectors = await anyio.to_thread.run_sync(embedder.embed, texts)
    except BaseException as e:
        await meter.settle({"error": str(e)}, 0, 0, "error")
        raise
    data: list[dict[str, Any]] = [
        {"object": "embedding", "index": i, "embedding": encode_vector(v, body.encoding_format)}
        for i, v in enumerate(vectors)
    ]
    response = {
        "object": "list",
        "data": data,
        "model": embedder.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "feilun": {"trace_id": admission.trace_id, "model_ref": embedder.name},
    }
    # The trace keeps the shape of the answer, not every vector.
    summary = {"object": "list", "count": len(vectors), "dimension": embedder.dimension}
    await meter.settle(summary, tokens, 0, "ok")
    return FastJSONResponse(response)
