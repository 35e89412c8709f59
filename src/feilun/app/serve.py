"""Compose the gateway from a workspace: registry, embedder, SQL ledger, limiter, FastAPI app.

`build_gateway` is what `feilun serve` and the tests use; the server itself is uvicorn.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from feilun.app.answering import open_library, open_rag_model
from feilun.app.workspace import Workspace
from feilun.core import registry as plugins
from feilun.core.caching import TtlCache
from feilun.core.errors import FeilunError
from feilun.core.protocols import ChatModel, Embedder
from feilun.knowledge.library import list_kbs
from feilun.models.packaged import MINILM
from feilun.serving.accounts import Accounts
from feilun.serving.gateway import Gateway, ServerLimits
from feilun.serving.ledger import SqlLedger
from feilun.serving.limits import build_limiter
from feilun.serving.openai.chat_completions.protocol import RAG_PREFIX

if TYPE_CHECKING:
    from fastapi import FastAPI

RESOLVE_TTL_S = 0.5  # a name follows a moved alias within twice this (see get_or_refresh)


def build_gateway(workspace: Workspace) -> Gateway:
    """Wire the registry, the packaged embedder and the SQL ledger into a Gateway."""
    registry = workspace.models
    # A moved alias (`prod` promoted) or a new version is picked up within a second; a
    # name in use is re-resolved (and a new model loaded) in the background, off the hot path.
    opened: TtlCache[str, tuple[str, ChatModel]] = TtlCache(ttl_s=RESOLVE_TTL_S)

    library = open_library(workspace)

    def resolve(name: str) -> tuple[str, ChatModel]:
        if name.startswith(RAG_PREFIX):  # `rag:KB` or `rag:KB:MODEL`
            kb, _, model = name.removeprefix(RAG_PREFIX).partition(":")
            return open_rag_model(workspace, library, kb, model or None)
        resolved = registry.resolve(name)
        return resolved.ref, registry.open(resolved)

    def open_model(name: str) -> tuple[str, ChatModel]:
        return opened.get_or_refresh(name, lambda: resolve(name))

    def model_names() -> list[str]:
        knowledge_bases = [RAG_PREFIX + kb.name for kb in list_kbs(workspace.catalog)]
        models = [m.name for m in registry.list_models()] + [a.name for a in registry.aliases()]
        return models + knowledge_bases

    lock = threading.Lock()
    loaded: list[Embedder] = []

    def embedder() -> Embedder:
        with lock:
            if not loaded:
                path = MINILM.locate()
                if path is None:
                    raise FeilunError(f"{MINILM.name} is not installed", MINILM.install_hint)
                loaded.append(plugins.lookup("embedders", "sentence")(path, name=MINILM.name))
        return loaded[0]

    async def shutdown() -> None:
        for model in registry.opened():
            aclose = getattr(model, "aclose", None)
            if aclose is not None:
                await aclose()

    accounts = Accounts(workspace.database)
    ledger = SqlLedger(workspace.database, accounts, build_limiter(workspace.settings.redis_url))
    return Gateway(
        open_model=open_model,
        model_names=model_names,
        ledger=ledger,
        embedder=embedder,
        embedder_name=MINILM.name if MINILM.locate() is not None else None,
        shutdown=shutdown,
        limits=ServerLimits(max_body_bytes=workspace.settings.max_body_bytes),
    )


def build_server_app(workspace: Workspace) -> FastAPI:
    """The whole HTTP app: OpenAI routes, admin routes, tenant-scoped routes."""
    from feilun.serving.admin.router import router as admin_router
    from feilun.serving.admin.router import tenant_router
    from feilun.serving.app import build_app

    app = build_app(build_gateway(workspace))
    app.include_router(admin_router)
    app.include_router(tenant_router)
    return app
