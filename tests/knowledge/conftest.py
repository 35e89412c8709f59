"""Knowledge fixtures: a workspace with real regulations as Documents, and a fake embedder.

The fake embedder hashes analyzed words into a small vector (a bag of words), so dense and
hybrid search run in milliseconds with no weights; tests of the real MiniLM are marked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from feilun.core.errors import PluginError
from feilun.core.protocols import Embedder
from feilun.core.records import Document
from feilun.knowledge.analyzers import Analyzer
from feilun.knowledge.library import Library

DATA = Path("../shared/data")
INDUSTRY = DATA / "industry" / "docs"
GAS = INDUSTRY / "zh" / "城镇燃气管理条例(2016-02-06).md"
LICENSE = INDUSTRY / "zh" / "安全生产许可证条例(2014-07-29).md"
OSHA = INDUSTRY / "en" / "US-Code-Title29-Ch15-Occupational-Safety-and-Health-Act.md"
SMOKING = DATA / "documents" / "zh" / "shanghai-smoking-control-regulation.md"


class FakeEmbedder:
    """A bag of hashed analyzer terms in 64 dimensions, L2-normalised."""

    def __init__(self, name: str = "fake-bow", dimension: int = 64) -> None:
        self.name = name
        self.dimension = dimension
        self.calls: list[int] = []  # texts per embed call
        self._analyzer = Analyzer()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for term in self._analyzer.analyze(text):
                digest = hashlib.blake2b(term.encode(), digest_size=4).digest()
                vectors[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-9)).tolist()


def document(path: Path, collection: str = "laws") -> Document:
    """A Document as `feilun data ingest` would make it from a Markdown file."""
    lang = "zh" if "/zh/" in str(path) else "en"
    text = path.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip()
    return Document(
        name=f"{collection}/{path.name}",
        collection=collection,
        source=str(path),
        source_id=hashlib.sha256(text.encode()).hexdigest(),
        media_type="text/markdown",
        language=lang,
        title=title,
        text=text,
    )


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def library(tmp_path: Path, fake_embedder: FakeEmbedder) -> Iterator[Library]:
    """A fresh metadata DB and artifact store holding collection `laws` (two zh, one en law).

    Built directly rather than by `init_workspace`, which also registers the packaged chat
    model (seconds of GGUF parsing that no test here needs).
    """
    from feilun.store import migrate
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog
    from feilun.store.database import open_database

    database = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    migrate.upgrade(database)
    catalog = SqlCatalog(database)
    for path in (GAS, LICENSE, OSHA):
        catalog.save(document(path))

    def open_embedder(name: str) -> Embedder:
        if name != fake_embedder.name:
            raise PluginError(f"unknown embedder {name!r}", "use fake-bow")
        return fake_embedder

    yield Library(
        catalog,
        ArtifactStore(tmp_path / "artifacts"),
        lock_dir=tmp_path / "locks",
        open_embedder=open_embedder,
    )
    database.close()
