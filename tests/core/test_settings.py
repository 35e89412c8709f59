from __future__ import annotations

from pathlib import Path

import pytest

from feilun.core.errors import ConfigError
from feilun.core.settings import DEFAULT_WORKSPACE, load_settings, resolve_workspace


def test_workspace_resolution_order(tmp_path: Path) -> None:
    assert resolve_workspace(tmp_path / "a", {"FEILUN_WORKSPACE": "b"}) == tmp_path / "a"
    assert resolve_workspace(None, {"FEILUN_WORKSPACE": "b"}) == Path("b")
    assert resolve_workspace(None, {}) == DEFAULT_WORKSPACE


def test_file_then_environment(tmp_path: Path) -> None:
    (tmp_path / "feilun.toml").write_text('redis_url = "redis://file"\nmodel_cache = "/c"\n')
    settings = load_settings(tmp_path, {"FEILUN_REDIS_URL": "redis://env", "OTHER": "x"})
    assert settings.redis_url == "redis://env"
    assert settings.resolved_model_cache == Path("/c")
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'feilun.db'}"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    (tmp_path / "feilun.toml").write_text('databse_url = "x"\n')
    with pytest.raises(ConfigError, match="databse_url") as error:
        load_settings(tmp_path, {})
    assert "database_url" in (error.value.fix or "")


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "feilun.toml").write_text("database_url = \n")
    with pytest.raises(ConfigError, match="feilun.toml"):
        load_settings(tmp_path, {})
