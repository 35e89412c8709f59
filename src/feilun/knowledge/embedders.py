"""Embedders a knowledge base can name, opened through the model layer's plugin registry.

A knowledge base stores the embedder's name; the same name must open the same model at query
time. The packaged all-MiniLM-L6-v2 is always known; `NO_EMBEDDER` builds a BM25-only base.
"""

from __future__ import annotations

from feilun.core import registry as plugins
from feilun.core.errors import BackendUnavailable, ConfigError, PluginError
from feilun.core.protocols import Embedder
from feilun.models.packaged import MINILM

DEFAULT_EMBEDDER = MINILM.name
NO_EMBEDDER = "none"
KNOWN_EMBEDDERS = (MINILM.name,)
# Languages an embedder was trained on; a name not listed is taken to cover every language.
EMBEDDER_LANGUAGES: dict[str, tuple[str, ...]] = {MINILM.name: ("en",)}


def covers_language(embedder: str, language: str) -> bool:
    """Whether `embedder`'s vectors mean something for text in `language` (zh, en, …)."""
    languages = EMBEDDER_LANGUAGES.get(embedder)
    return languages is None or language in languages


def open_embedder(name: str) -> Embedder:
    """Load the embedder called `name` (slow: it reads the model's weights)."""
    if name != MINILM.name:
        raise PluginError(
            f"unknown embedder {name!r}; known: {', '.join(KNOWN_EMBEDDERS)}",
            f"use one of those, or {NO_EMBEDDER!r} for a BM25-only knowledge base",
        )
    folder = MINILM.locate()
    if folder is None:
        raise BackendUnavailable(f"embedder {name!r} is not installed", MINILM.install_hint)
    embedder: Embedder = plugins.lookup("embedders", "sentence")(folder, name=MINILM.name)
    return embedder


def embedder_for(mode: str, name: str) -> Embedder | None:
    """The embedder a retrieval mode needs: none for bm25, else `name` (which must not be none)."""
    if mode == "bm25":
        return None
    if name == NO_EMBEDDER:
        raise ConfigError(f"--mode {mode} needs an embedder", "drop --embedder none, or use bm25")
    return open_embedder(name)
