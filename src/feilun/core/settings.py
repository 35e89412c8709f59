"""Settings: `feilun.toml` in the workspace, overridden by `FEILUN_*` environment variables.

This is the one module that reads the environment. The composition root (`feilun.app`)
loads settings once and passes them down; library code never imports a global config.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pydantic

from feilun.core.errors import ConfigError

SETTINGS_FILE = "feilun.toml"
DEFAULT_WORKSPACE = Path("feilun-workspace")
ENV_PREFIX = "FEILUN_"
#: Bumped when a workspace's layout changes incompatibly; newer workspaces are refused.
WORKSPACE_FORMAT = 1


class Settings(pydantic.BaseModel):
    """Deployment settings of one workspace."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    workspace: Path = pydantic.Field(description="Folder holding feilun.toml, DB and artifacts.")
    format_version: int = pydantic.Field(WORKSPACE_FORMAT, description="Workspace layout version.")
    created_by: str = pydantic.Field("", description="Feilun version that created the workspace.")
    database_url: str = pydantic.Field(
        "", description="SQLAlchemy URL of the metadata DB; empty means feilun.db in the workspace."
    )
    artifact_root: str = pydantic.Field(
        "", description="Folder of the artifact store; empty means artifacts/ in the workspace."
    )
    busy_timeout_ms: int = pydantic.Field(
        5000, ge=0, description="How long a SQLite writer waits for another's lock."
    )
    sqlite_synchronous: Literal["normal", "full"] = pydantic.Field(
        "normal",
        description="SQLite commit durability: normal survives a killed server (kill -9); full "
        "also a power cut, at one fsync (about a millisecond) per commit.",
    )
    max_body_bytes: int = pydantic.Field(
        1 << 20, ge=1024, description="Largest HTTP request body the gateway accepts."
    )
    redis_url: str = pydantic.Field("", description="Redis for rate limits; empty: in-process.")
    audit_checkpoint_every: int = pydantic.Field(
        100, ge=1, description="Sign an audit checkpoint every this many audit events."
    )
    vector_store_url: str = pydantic.Field(
        "",
        description="PostgreSQL with pgvector holding knowledge base vectors; empty: the "
        "embedded index in the workspace.",
    )
    model_cache: str = pydantic.Field(
        "", description="Folder for converted model weights; empty means cache/ in the workspace."
    )
    watermark: bool = pydantic.Field(
        False, description="Watermark generated text (green-list bias, keyed per deployment)."
    )
    watermark_gamma: float = pydantic.Field(
        0.25, gt=0.0, lt=1.0, description="Watermark: share of the vocabulary that is green."
    )
    watermark_delta: float = pydantic.Field(
        2.0, gt=0.0, le=20.0, description="Watermark: logit bias added to green tokens."
    )

    @property
    def resolved_database_url(self) -> str:
        """The metadata DB URL, defaulting to the workspace's SQLite file."""
        return self.database_url or f"sqlite:///{self.workspace / 'feilun.db'}"

    @property
    def resolved_artifact_root(self) -> Path:
        """The artifact store folder."""
        return Path(self.artifact_root) if self.artifact_root else self.workspace / "artifacts"

    @property
    def resolved_model_cache(self) -> Path:
        """The converted-weights cache folder."""
        return Path(self.model_cache) if self.model_cache else self.workspace / "cache"


def resolve_workspace(explicit: Path | None, env: Mapping[str, str] = os.environ) -> Path:
    """`--workspace`, else `FEILUN_WORKSPACE`, else `./feilun-workspace`."""
    if explicit is not None:
        return explicit
    from_env = env.get(ENV_PREFIX + "WORKSPACE")
    return Path(from_env) if from_env else DEFAULT_WORKSPACE


def _env_overrides(env: Mapping[str, str]) -> dict[str, str]:
    fields = set(Settings.model_fields) - {"workspace", "format_version", "created_by"}
    return {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in fields
    }


def read_settings_file(path: Path) -> dict[str, object]:
    """Parse `feilun.toml`, naming the file and line on a syntax error."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"{path} is not valid TOML: {e}", "fix the file or re-run `feilun init`"
        ) from e


def load_settings(workspace: Path, env: Mapping[str, str] = os.environ) -> Settings:
    """Settings of `workspace`: its feilun.toml, then FEILUN_* overrides."""
    values: dict[str, object] = {}
    settings_path = workspace / SETTINGS_FILE
    if settings_path.is_file():
        values.update(read_settings_file(settings_path))
    values.update(_env_overrides(env))
    values["workspace"] = workspace
    try:
        return Settings.model_validate(values)
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(
            f"invalid settings in {settings_path} or FEILUN_* variables: {problems}",
            f"known keys: {', '.join(sorted(Settings.model_fields))}",
        ) from e
