"""Shared fixtures: a tiny model folder, an isolated workspace environment, a live server."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A save_pretrained folder of a tiny random Llama with a real small tokenizer."""
    from feilun.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


MakeWorkspace = Callable[[Path, Path, dict[str, list[dict[str, Any]]]], Path]


@pytest.fixture(scope="session")
def make_workspace() -> MakeWorkspace:
    """`make_workspace(path, model_dir, datasets)`: a workspace with `tiny` and those datasets."""
    from feilun.app.workspace import init_workspace
    from feilun.data.datasets import save_dataset
    from feilun.models.registry import ModelRegistry

    def make(path: Path, model_dir: Path, datasets: dict[str, list[dict[str, Any]]]) -> Path:
        with pytest.MonkeyPatch.context() as patch:  # the packaged SmolLM2 takes ~10 s to inspect
            patch.setattr(ModelRegistry, "ensure_packaged", lambda self: [])
            ws, _ = init_workspace(path, env={})
        try:
            ws.models.add("tiny", "safetensors", str(model_dir))
            for name, rows in datasets.items():
                save_dataset(ws.catalog, ws.artifacts, name, rows)
        finally:
            ws.close()
        return path

    return make


@pytest.fixture(scope="session")
def tiny_workspace_template(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, make_workspace: MakeWorkspace
) -> Path:
    """Made once: a workspace with the tiny random Llama registered as `tiny`."""
    return make_workspace(tmp_path_factory.mktemp("tiny-ws") / "ws", tiny_model_dir, {})


@pytest.fixture
def tiny_workspace(tiny_workspace_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the workspace with `tiny` registered."""
    path = tmp_path / "ws"
    shutil.copytree(tiny_workspace_template, path)
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment variables pointing Feilun at a fresh workspace path (not yet created)."""
    return {"FEILUN_WORKSPACE": str(tmp_path / "ws")}


# PostgreSQL for tests of the metadata database (feilun.store, feilun.app): a fresh database per
# session and a fresh schema per test, so runs and tests never collide. Skipped, with the reason,
# only when no server can be reached.
PG_ADMIN_URLS = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)


@pytest.fixture(scope="session")
def postgres_database_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped when the session ends."""
    psycopg = pytest.importorskip("psycopg")
    from psycopg import sql

    errors = []
    for admin_url in PG_ADMIN_URLS:
        try:
            psycopg.connect(admin_url, connect_timeout=3).close()
            break
        except psycopg.Error as e:
            errors.append(f"{admin_url}: {' '.join(str(e).split())}")
    else:
        pytest.skip(f"PostgreSQL not reachable at {'; '.join(errors)}")
    name = f"feilun_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield admin_url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgres_url(postgres_database_url: str) -> Iterator[str]:
    """`postgresql://` URL of an empty schema (via search_path), dropped after the test."""
    import psycopg
    from psycopg import sql

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield f"{postgres_database_url}?options=-csearch_path%3D{schema}"
    with psycopg.connect(postgres_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feilun.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def bare_db(database_url: str) -> Iterator[Any]:
    """An open, empty (unmigrated) metadata database on SQLite and on PostgreSQL."""
    from feilun.store.database import open_database

    database = open_database(database_url)
    yield database
    database.close()


ServeApp = Callable[[Any], AbstractContextManager[str]]


@pytest.fixture(scope="session")
def serve_app() -> ServeApp:
    """`with serve_app(asgi_app) as base_url:` runs the app under uvicorn on 127.0.0.1."""
    from feilun.app.serve import serve_in_thread

    return serve_in_thread
