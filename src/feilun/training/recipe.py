"""Training recipes as YAML: the schema, dotted overrides and errors that name the key.

One schema serves every recipe (`sft_lora`, `dpo_lora`, `cpt_lora`); each field's
`description` is its help text. Reading, overrides and unknown keys (named with the closest
known key) go through `core.overrides`, as cleaning recipes do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pydantic

from feilun.core.errors import ConfigError
from feilun.core.overrides import Yaml, apply_overrides, read_mapping, unknown_keys
from feilun.core.records import hash_content

RECIPES_DIR = Path("recipes/train")
_STRICT = pydantic.ConfigDict(extra="forbid", frozen=True)


class LoraSection(pydantic.BaseModel):
    """Low-rank adapter shape (ignored by `method: full`)."""

    model_config = _STRICT
    rank: int = pydantic.Field(8, ge=1, le=1024, description="Rank r of the update B·A.")
    alpha: int = pydantic.Field(16, ge=1, description="Scale: the update is alpha/r · B·A.")
    dropout: float = pydantic.Field(0.0, ge=0, lt=1, description="Dropout on the adapter input.")
    targets: list[str] = pydantic.Field(
        default_factory=lambda: ["q_proj", "v_proj"],
        min_length=1,
        description="Module names that get an adapter, e.g. q_proj, k_proj, v_proj, o_proj.",
    )


class TrainSection(pydantic.BaseModel):
    """Optimisation: schedule, batch and seed."""

    model_config = _STRICT
    lr: float = pydantic.Field(2e-4, gt=0, description="Peak learning rate (AdamW).")
    epochs: int = pydantic.Field(1, ge=1, description="Passes over the training split.")
    max_steps: int = pydantic.Field(
        0, ge=0, description="Optimizer steps; 0 means as many as `epochs` take."
    )
    batch_size: int = pydantic.Field(
        8, ge=1, description="Examples per optimizer step, over all processes."
    )
    micro_batch_size: int = pydantic.Field(
        4, ge=1, description="Examples per forward pass; gradients accumulate up to batch_size."
    )
    warmup_steps: int = pydantic.Field(0, ge=0, description="Linear warmup steps.")
    schedule: Literal["cosine", "linear", "constant"] = pydantic.Field(
        "cosine", description="Learning-rate decay after warmup."
    )
    weight_decay: float = pydantic.Field(0.0, ge=0, description="AdamW weight decay.")
    grad_clip: float = pydantic.Field(1.0, ge=0, description="Max gradient norm; 0 turns it off.")
    eval_every: int = pydantic.Field(
        0, ge=0, description="Validation loss every N steps; 0: only before and after."
    )
    seed: int = pydantic.Field(0, description="Seeds data order, split, dropout and init.")
    threads: int = pydantic.Field(0, ge=0, description="CPU threads per process; 0: torch's.")


class DataSection(pydantic.BaseModel):
    """How dataset rows become token sequences."""

    model_config = _STRICT
    max_seq_len: int = pydantic.Field(512, ge=8, description="Longest sequence in tokens.")
    overlong: Literal["truncate", "skip"] = pydantic.Field(
        "truncate", description="What to do with a row longer than max_seq_len."
    )
    packing: bool = pydantic.Field(
        False, description="Pack several examples into one sequence (attention kept apart)."
    )
    val_fraction: float = pydantic.Field(
        0.1, ge=0, lt=1, description="Share of examples held out for validation loss."
    )
    chat_template: str = pydantic.Field(
        "", description="Jinja chat template; empty uses the base model's own."
    )


class CheckpointSection(pydantic.BaseModel):
    """When to checkpoint (atomic folders under runs/<id>/checkpoints)."""

    model_config = _STRICT
    every_steps: int = pydantic.Field(
        0, ge=0, description="Checkpoint every N steps; 0 turns checkpoints off."
    )
    keep: int = pydantic.Field(2, ge=1, description="Newest checkpoints kept on disk.")


class DpoSection(pydantic.BaseModel):
    """Direct preference optimisation (dpo_lora only)."""

    model_config = _STRICT
    beta: float = pydantic.Field(0.1, gt=0, description="Strength of the pull to the base model.")


class Recipe(pydantic.BaseModel):
    """A training recipe: which recipe code runs, on which model and data, how."""

    model_config = _STRICT
    recipe: str = pydantic.Field(description="Recipe code: sft_lora, dpo_lora or cpt_lora.")
    description: str = pydantic.Field("", description="What this recipe does, in a sentence.")
    base_model: str = pydantic.Field(description="Registered base model: name or name@version.")
    dataset: str = pydantic.Field(description="Dataset: name, name@3 or name@latest.")
    method: Literal["lora", "full", "qlora"] = pydantic.Field(
        "lora", description="lora (adapter), full (every weight) or qlora (4-bit base, CUDA)."
    )
    adapter: str = pydantic.Field(
        "", description="Name the result is registered under; empty: <dataset>-<recipe>."
    )
    memory_budget_mb: int = pydantic.Field(
        0, ge=0, description="Memory the run may use; 0 means what the device has free."
    )
    lora: LoraSection = pydantic.Field(default_factory=LoraSection, description=LoraSection.__doc__)
    train: TrainSection = pydantic.Field(
        default_factory=TrainSection, description=TrainSection.__doc__
    )
    data: DataSection = pydantic.Field(default_factory=DataSection, description=DataSection.__doc__)
    checkpoint: CheckpointSection = pydantic.Field(
        default_factory=CheckpointSection, description=CheckpointSection.__doc__
    )
    dpo: DpoSection = pydantic.Field(default_factory=DpoSection, description=DpoSection.__doc__)

    @property
    def recipe_hash(self) -> str:
        """sha256 of the resolved recipe: equal recipes train equal adapters."""
        return hash_content(self.model_dump(mode="json"))

    @property
    def adapter_name(self) -> str:
        """The registered name of the result."""
        return self.adapter or f"{self.dataset.split('@')[0]}-{self.recipe}".replace("_", "-")


def load_recipe(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe YAML, apply `dotted.key=value` overrides, validate."""
    path = Path(path)
    yaml = _yaml()
    raw = read_mapping(
        path,
        yaml,
        shape="of keys",
        shipped=f"`feilun recipes ls` lists the shipped ones in {RECIPES_DIR}/",
        start=f"copy a shipped one: `feilun recipes cp tiny_sft_lora {path.name}`",
    )
    apply_overrides(raw, overrides, yaml, example="`train.lr=1e-4`")
    return validate_recipe(raw, str(path))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate parsed YAML, naming unknown keys with the closest known one."""
    try:
        return Recipe.model_validate(raw)
    except pydantic.ValidationError as e:
        raise _recipe_error(source, e) from e


def _yaml() -> Yaml:
    import yaml  # here, not at the top: `feilun --help` stays instant

    return Yaml(yaml.safe_load, yaml.YAMLError)


def _recipe_error(source: str, error: pydantic.ValidationError) -> ConfigError:
    unknown = unknown_keys(error, Recipe)
    if unknown:
        return ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)}",
            "fix the spelling; `feilun recipes validate FILE` lists every key with its help",
        )
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    got = "" if first["type"] == "missing" else f" (got {first['input']!r})"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    field_help = _help_of(where)
    return ConfigError(
        f"{source}: {where}: {first['msg']}{got}{more}",
        field_help or "see `feilun recipes validate FILE` for every key and its help",
    )


def _help_of(dotted: str) -> str:
    """The description of a dotted key, e.g. `train.lr` → its help text."""
    model: type[pydantic.BaseModel] = Recipe
    field = None
    for part in dotted.split("."):
        field = model.model_fields.get(part)
        if field is None:
            return ""
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            model = annotation
    return f"{dotted}: {field.description}" if field and field.description else ""


def describe_keys() -> list[tuple[str, str, str]]:
    """Every recipe key with its default and help: (key, default, description)."""
    rows = []

    def walk(model: type[pydantic.BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
                walk(annotation, f"{prefix}{name}.")
                continue
            default = (
                "(required)"
                if field.is_required()
                else repr(field.get_default(call_default_factory=True))
            )
            rows.append((prefix + name, default, field.description or ""))

    walk(Recipe, "")
    return rows


def shipped_recipes_dir() -> Path | None:
    """`recipes/train` of the Feilun checkout this code runs from, if there is one."""
    folder = Path(__file__).resolve().parents[3] / RECIPES_DIR
    return folder if folder.is_dir() else None
