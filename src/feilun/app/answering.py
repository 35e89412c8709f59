"""Retrieval-augmented models from a workspace: what `rag:KB[:MODEL]` and `feilun ask` run."""

from __future__ import annotations

from feilun.app.workspace import Workspace
from feilun.core.protocols import ChatModel
from feilun.evaluation.rag import KbAccess, RagOpener
from feilun.knowledge.library import Library, lock_dir_of, open_vector_store, resolve_kb
from feilun.knowledge.rag import RagChatModel, RagSettings
from feilun.models.packaged import SMOLLM2

DEFAULT_MODEL = SMOLLM2.name  # what a knowledge base answers with unless a model is named


def open_library(workspace: Workspace) -> Library:
    """The workspace's knowledge bases (one Library per process: it caches loaded indexes)."""
    return Library(
        workspace.catalog,
        workspace.artifacts,
        lock_dir=lock_dir_of(workspace.path),
        vector_store=open_vector_store(workspace.settings.vector_store_url),
    )


def open_rag_model(
    workspace: Workspace,
    library: Library,
    kb: str,
    model: str | None = None,
    settings: RagSettings | None = None,
) -> tuple[str, RagChatModel]:
    """`model` (default: the packaged chat model) answering from `kb`, and its pinned ref.

    The ref is `base@1[:adapter@2]+kb:NAME@VERSION`, the version current when opened; the
    model itself reads the knowledge base's latest version at each question.
    """
    record = resolve_kb(workspace.catalog, kb)  # NotFound lists the knowledge bases
    resolved = workspace.models.resolve(model or DEFAULT_MODEL)
    chat_model = workspace.models.open(resolved)
    return f"{resolved.ref}+kb:{record.ref}", RagChatModel(chat_model, library, kb, settings)


def kb_access_opener(workspace: Workspace, library: Library | None = None) -> RagOpener:
    """How rag eval tasks ask a knowledge base: as `rag:KB` answers, pinned to one version.

    The library is opened on the first rag task, not before: most suites have none.
    """

    def open_kb(model: ChatModel, kb: str) -> KbAccess:
        nonlocal library
        ref = resolve_kb(workspace.catalog, kb).ref  # NotFound lists the knowledge bases
        shared = library = library or open_library(workspace)
        settings = RagSettings()
        return KbAccess(ref, RagChatModel(model, shared, ref, settings), settings.k)

    return open_kb
