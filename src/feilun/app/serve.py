"""Compose the gateway from a workspace: registry, embedder, SQL ledger, limiter, FastAPI app.

`build_gateway` is what `feilun serve` and the tests use; the server itself is uvicorn.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from feilun.app.answering import open_library, open_rag_model
from feilun.app.audit import audit_log
from feilun.app.moderation import build_moderation, policy_store
from feilun.app.workspace import Workspace
from feilun.core import registry as plugins
from feilun.core.caching import TtlCache
from feilun.core.errors import FeilunError
from feilun.core.protocols import ChatModel, Embedder
from feilun.governance.watermark import deployment_watermark
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


@dataclass(frozen=True)
class Route:
    """Where a served name goes: one model, or an alias's target and its canary's share."""

    main: tuple[str, ChatModel]
    canary: tuple[str, ChatModel] | None = None
    share: float = 0.0

    def pick(self, rng: random.Random) -> tuple[str, ChatModel]:
        """The (ref, model) for one request: the canary for its share of draws."""
        if self.canary is not None and rng.random() < self.share:
            return self.canary
        return self.main


def build_gateway(workspace: Workspace) -> Gateway:
    """Wire the registry, the packaged embedder and the SQL ledger into a Gateway."""
    registry = workspace.models
    # A moved alias (`prod` promoted) or a new version is picked up within a second; a
    # name in use is re-resolved (and a new model loaded) in the background, off the hot path.
    opened: TtlCache[str, Route] = TtlCache(ttl_s=RESOLVE_TTL_S)

    library = open_library(workspace)

    def open_ref(ref: str) -> tuple[str, ChatModel]:
        resolved = registry.resolve(ref)
        return resolved.ref, registry.open(resolved)

    def route(name: str) -> Route:
        if name.startswith(RAG_PREFIX):  # `rag:KB` or `rag:KB:MODEL`
            kb, _, model = name.removeprefix(RAG_PREFIX).partition(":")
            return Route(open_rag_model(workspace, library, kb, model or None))
        alias = registry.alias(name)
        canary = alias.meta.get("canary") if alias is not None else None
        if alias is not None and canary:  # both sides open; each request draws its own
            return Route(open_ref(alias.target), open_ref(canary["target"]), canary["share"])
        return Route(open_ref(name))

    def open_model(name: str) -> tuple[str, ChatModel]:
        return opened.get_or_refresh(name, lambda: route(name)).pick(registry.rng)

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

    accounts = Accounts(workspace.database, audit=audit_log(workspace))
    ledger = SqlLedger(workspace.database, accounts, build_limiter(workspace.settings.redis_url))
    moderation = build_moderation(workspace, accounts)  # makes the label key when missing
    if registry.watermark is None:  # so a tenant's policy can ask for the watermark
        registry.watermark = deployment_watermark(workspace.settings)
    return Gateway(
        open_model=open_model,
        model_names=model_names,
        ledger=ledger,
        embedder=embedder,
        embedder_name=MINILM.name if MINILM.locate() is not None else None,
        shutdown=shutdown,
        limits=ServerLimits(max_body_bytes=workspace.settings.max_body_bytes),
        moderation=moderation,
    )


def build_server_app(workspace: Workspace) -> FastAPI:
    """The whole HTTP app: OpenAI routes, admin routes, tenant-scoped routes."""
    from feilun.serving.admin.policies import router as policies_router
    from feilun.serving.admin.router import router as admin_router
    from feilun.serving.admin.router import tenant_router
    from feilun.serving.app import build_app
    from feilun.serving.feedback import FeedbackStore

    app = build_app(build_gateway(workspace))
    app.state.policies = policy_store(workspace)
    app.include_router(policies_router)
    app.state.feedback = FeedbackStore(workspace.database)
    app.include_router(admin_router)
    app.include_router(tenant_router)
    return app


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a thread on a free port of 127.0.0.1; its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise FeilunError("the gateway did not start", "see the log above for the reason")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
