"""The turn config (recipes/flywheel/<name>.yaml): what a turn curates, trains, evaluates, gates.

Relative paths (recipe, suite, rules) are read from the config file's folder; the report
folder is relative to the workspace. The resolved config is stored with the turn, so a
resumed turn runs with what it started with, whatever happened to the file since.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic

from feilun.core.errors import ConfigError

_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)


class CurateStep(pydantic.BaseModel):
    """Turn traces and feedback into datasets (`feilun.app.curation`)."""

    model_config = _STRICT
    rules: str = pydantic.Field(description="Curation rules YAML.")
    dataset: str = pydantic.Field(description="Name of the curated datasets.")


class TrainStep(pydantic.BaseModel):
    """Train the candidate with a recipe (SFT or DPO) on the datasets plus curated rows."""

    model_config = _STRICT
    recipe: str = pydantic.Field(description="Training recipe YAML.")
    datasets: list[str] = pydantic.Field(
        default_factory=list, description="Datasets to train on (default: the recipe's)."
    )
    overrides: dict[str, Any] = pydantic.Field(
        default_factory=dict, description="Recipe overrides, dotted keys: {train.lr: 1e-4}."
    )
    price_per_million_tokens: float = pydantic.Field(
        0.0, ge=0, description="Training cost per million tokens, for the report (0: none)."
    )


class EvaluateStep(pydantic.BaseModel):
    """The suite candidate and incumbent both run (plus the curated eval set)."""

    model_config = _STRICT
    suite: str = pydantic.Field(description="Evaluation suite YAML.")


class GateStep(pydantic.BaseModel):
    """The promotion gate."""

    model_config = _STRICT
    rules: str = pydantic.Field(description="Gate rules YAML.")


class CanaryStep(pydantic.BaseModel):
    """Route a share of the alias's requests to the candidate before promoting it."""

    model_config = _STRICT
    share: float = pydantic.Field(gt=0, lt=1, description="Share of requests to the candidate.")
    hold_s: float = pydantic.Field(
        0.0, ge=0, description="Seconds the canary runs before the promotion."
    )


class ReportStep(pydantic.BaseModel):
    """Where the report across turns is written."""

    model_config = _STRICT
    dir: str = pydantic.Field("", description="Folder (default: flywheel-reports/<name>).")


class TurnConfig(pydantic.BaseModel):
    """One flywheel: which alias it moves, from which base, with which steps."""

    model_config = _STRICT
    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    alias: str = pydantic.Field(description="The serving alias a promotion moves, e.g. prod.")
    base: str = pydantic.Field(description="Base model candidates are trained on.")
    curate: CurateStep | None = None
    train: TrainStep
    evaluate: EvaluateStep
    gate: GateStep
    canary: CanaryStep | None = None
    report: ReportStep = pydantic.Field(default_factory=ReportStep)

    def report_dir(self, workspace: Path) -> Path:
        """The report folder (relative ones under the workspace)."""
        folder = Path(self.report.dir or f"flywheel-reports/{self.name}")
        return folder if folder.is_absolute() else workspace / folder


_PATHS = (("curate", "rules"), ("train", "recipe"), ("evaluate", "suite"), ("gate", "rules"))


def load_config(path: Path) -> TurnConfig:
    """Read and validate a turn config; relative file paths become absolute."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"turn config {path} does not exist", "see recipes/flywheel/")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}", "fix the file") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} is not a mapping of keys", "see recipes/flywheel/tiny.yaml")
    for section, key in _PATHS:
        if isinstance(raw.get(section), dict) and isinstance(raw[section].get(key), str):
            raw[section][key] = str((path.parent / raw[section][key]).resolve())
    return parse_config(raw, str(path))


def parse_config(raw: Any, source: str = "turn config") -> TurnConfig:
    """Validate a parsed config (as stored with a turn)."""
    try:
        return TurnConfig.model_validate(raw)
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid {source}: {problems}", "see docs/flywheel.md") from e
