"""The workspace: settings, metadata DB, artifact store and model registry, built together.

`init_workspace` creates one (feilun.toml is written last, so a failed init leaves nothing
that looks like a workspace); `open_workspace` finds one via --workspace,
FEILUN_WORKSPACE or ./feilun-workspace and refuses one made by a newer Feilun.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from feilun import __version__
from feilun.core.errors import ConfigError, WorkspaceError
from feilun.core.files import write_atomically
from feilun.core.settings import (
    SETTINGS_FILE,
    WORKSPACE_FORMAT,
    Settings,
    load_settings,
    resolve_workspace,
)
from feilun.governance.watermark import Watermark, deployment_watermark
from feilun.models.registry import ModelRegistry
from feilun.store import migrate
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import Database, open_database

_HEADER = (
    "# Feilun workspace settings. FEILUN_<KEY> environment variables override any key,\n"
    "# e.g. FEILUN_DATABASE_URL=postgresql://user@host/db. Empty values mean the defaults.\n"
)


@dataclass
class Workspace:
    """Everything a command needs, built from one workspace's settings."""

    settings: Settings
    database: Database
    catalog: SqlCatalog
    artifacts: ArtifactStore
    models: ModelRegistry

    @property
    def path(self) -> Path:
        """The workspace folder."""
        return self.settings.workspace

    def close(self) -> None:
        """Release the database connections."""
        self.database.close()


def _build(settings: Settings) -> Workspace:
    database = open_database(
        settings.resolved_database_url,
        busy_timeout_ms=settings.busy_timeout_ms,
        sqlite_synchronous=settings.sqlite_synchronous,
    )
    catalog = SqlCatalog(database)
    artifacts = ArtifactStore(settings.resolved_artifact_root)
    return Workspace(
        settings=settings,
        database=database,
        catalog=catalog,
        artifacts=artifacts,
        # Adapters open from their stored files, so they outlive the run folder.
        models=ModelRegistry(
            catalog,
            settings.resolved_model_cache,
            artifacts=artifacts,
            watermark=_watermark(settings),
            watermark_by_default=settings.watermark,
        ),
    )


def _watermark(settings: Settings) -> Watermark | None:
    """The deployment's watermark: made when the setting is on, else only if its key exists.

    With the setting off, runtimes get it for requests whose tenant policy asks for it.
    """
    try:
        return deployment_watermark(settings, create=settings.watermark)
    except ConfigError:
        return None  # no key yet: `feilun serve` makes it (see app.serve)


def _write_settings(path: Path, settings: Settings) -> None:
    """Write feilun.toml atomically: a temporary file renamed over the final name."""
    values = settings.model_dump(mode="json", exclude={"workspace"})
    # 0o600: a database URL may carry a password
    write_atomically(path / SETTINGS_FILE, _HEADER + tomli_w.dumps(values), mode=0o600)


def init_workspace(
    explicit: Path | None = None, env: Mapping[str, str] = os.environ
) -> tuple[Workspace, bool]:
    """Create the workspace (or open the existing one); also whether it was created now."""
    path = resolve_workspace(explicit, env)
    if (path / SETTINGS_FILE).is_file():
        existing = open_workspace(path, env)
        existing.models.ensure_packaged()
        return existing, False
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise WorkspaceError(
            f"{path} exists and is not a Feilun workspace (no {SETTINGS_FILE})",
            "pick a new or empty folder with --workspace",
        )
    created_folder = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    settings = load_settings(path, env).model_copy(
        update={"created_by": __version__, "format_version": WORKSPACE_FORMAT}
    )
    workspace: Workspace | None = None
    try:
        settings.resolved_artifact_root.mkdir(parents=True, exist_ok=True)
        settings.resolved_model_cache.mkdir(parents=True, exist_ok=True)
        workspace = _build(settings)
        migrate.upgrade(workspace.database)
        workspace.models.ensure_packaged()
        _write_settings(path, settings)
    except BaseException:
        if workspace is not None:
            workspace.close()
        shutil.rmtree(path, ignore_errors=True)
        if not created_folder:
            path.mkdir(exist_ok=True)
        raise
    return workspace, True


def open_workspace(explicit: Path | None = None, env: Mapping[str, str] = os.environ) -> Workspace:
    """Open an existing workspace, checking it is not from a newer Feilun and is migrated."""
    workspace = open_unchecked(explicit, env)
    try:
        migrate.check_revision(workspace.database)
    except BaseException:
        workspace.close()
        raise
    return workspace


def open_unchecked(explicit: Path | None = None, env: Mapping[str, str] = os.environ) -> Workspace:
    """Open a workspace without checking the DB revision (for `feilun doctor`)."""
    path = resolve_workspace(explicit, env)
    if not (path / SETTINGS_FILE).is_file():
        raise WorkspaceError(
            f"no Feilun workspace at {path.resolve()}",
            f"create one with `feilun init --workspace {path}`, or point --workspace or "
            "FEILUN_WORKSPACE at an existing one",
        )
    settings = load_settings(path, env)
    if settings.format_version > WORKSPACE_FORMAT:
        raise WorkspaceError(
            f"workspace {path} has format {settings.format_version} (made by Feilun "
            f"{settings.created_by or 'newer'}); this Feilun {__version__} reads up to "
            f"format {WORKSPACE_FORMAT}",
            "upgrade Feilun (`pip install -U feilun`) or use another workspace",
        )
    return _build(settings)


@contextmanager
def opened(
    explicit: Path | None = None, env: Mapping[str, str] = os.environ
) -> Iterator[Workspace]:
    """`open_workspace` as a context manager that closes it afterwards."""
    workspace = open_workspace(explicit, env)
    try:
        yield workspace
    finally:
        workspace.close()
