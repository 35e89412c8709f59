from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from feilun.app import workspace as ws_module
from feilun.app.doctor import run_doctor
from feilun.app.workspace import init_workspace, open_workspace, opened
from feilun.core.errors import WorkspaceError
from feilun.core.settings import load_settings
from feilun.store import migrate


def test_init_creates_a_complete_workspace(env: dict[str, str]) -> None:
    workspace, created = init_workspace(None, env)
    workspace.close()
    path = Path(env["FEILUN_WORKSPACE"])
    assert created
    assert (path / "feilun.toml").is_file()
    assert (path / "feilun.db").is_file()
    assert (path / "artifacts").is_dir()
    settings = load_settings(path, {})
    assert settings.created_by and settings.format_version == 1
    with opened(None, env) as again:
        assert "smollm2-135m-instruct" in [m.name for m in again.models.list_models()]
        assert migrate.current_revision(again.database) == migrate.head_revision()


def test_init_twice_is_a_no_op(env: dict[str, str]) -> None:
    first, created = init_workspace(None, env)
    first.close()
    second, created_again = init_workspace(None, env)
    second.close()
    assert created and not created_again
    assert [m.id for m in first.models.list_models()] == [m.id for m in second.models.list_models()]


def test_missing_workspace_says_how_to_create_one(env: dict[str, str]) -> None:
    with pytest.raises(WorkspaceError, match="no Feilun workspace") as error:
        open_workspace(None, env)
    assert "feilun init" in (error.value.fix or "")


def test_folder_that_is_not_a_workspace_is_not_touched(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(WorkspaceError, match="not a Feilun workspace"):
        init_workspace(tmp_path, {})
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_failed_init_leaves_nothing_behind(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(ws_module, "_write_settings", explode)
    with pytest.raises(OSError, match="disk full"):
        init_workspace(None, env)
    assert not Path(env["FEILUN_WORKSPACE"]).exists()


def test_workspace_from_a_newer_feilun_is_refused(env: dict[str, str]) -> None:
    init_workspace(None, env)[0].close()
    settings_file = Path(env["FEILUN_WORKSPACE"]) / "feilun.toml"
    settings_file.write_text(
        settings_file.read_text().replace("format_version = 1", "format_version = 9")
    )
    with pytest.raises(WorkspaceError, match="format 9") as error:
        open_workspace(None, env)
    assert "upgrade Feilun" in (error.value.fix or "")


def test_database_from_a_newer_feilun_is_refused(env: dict[str, str]) -> None:
    init_workspace(None, env)[0].close()
    db_file = Path(env["FEILUN_WORKSPACE"]) / "feilun.db"
    with sqlite3.connect(db_file) as connection:
        connection.execute("UPDATE alembic_version SET version_num = 'f00dface9999'")
    with pytest.raises(WorkspaceError, match="newer"):
        open_workspace(None, env)
    checks = {c.name: c for c in run_doctor(None, env)}
    assert not checks["database revision"].is_ok


def test_doctor_migrates_an_old_database_after_a_backup(env: dict[str, str]) -> None:
    workspace, _ = init_workspace(None, env)
    migrate.downgrade(workspace.database, "base")
    workspace.close()
    with pytest.raises(WorkspaceError, match="doctor"):
        open_workspace(None, env)
    checks = {c.name: c for c in run_doctor(None, env)}
    assert all(c.is_ok for c in checks.values()), checks
    assert "backup at" in checks["database revision"].detail
    assert list(Path(env["FEILUN_WORKSPACE"]).glob("feilun.db.bak-*"))
    with opened(None, env) as again:
        assert "smollm2-135m-instruct" in [m.name for m in again.models.list_models()]


def test_doctor_reports_a_missing_workspace(env: dict[str, str]) -> None:
    [check] = run_doctor(None, env)
    assert not check.is_ok and "feilun init" in check.fix


def test_postgres_metadata_database(env: dict[str, str], postgres_url: str) -> None:
    env = {**env, "FEILUN_DATABASE_URL": postgres_url}
    workspace, _ = init_workspace(None, env)
    workspace.close()
    assert not (Path(env["FEILUN_WORKSPACE"]) / "feilun.db").exists()
    with opened(None, env) as again:
        assert again.database.dialect == "postgresql"
        assert "smollm2-135m-instruct" in [m.name for m in again.models.list_models()]
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        kinds = connection.execute(sa.text("SELECT kind FROM records")).scalars().all()
    engine.dispose()
    assert "base_model" in kinds
