"""Cleaning recipes: one YAML file naming registered operators, in order, with their params.

Everything is validated at load time, before any item is read: the file's shape, each
operator's name (against the `feilun.operators` registry) and each operator's `Params`.
Errors name the key as the user wrote it: `recipe.yaml: operators[2].threshold: …`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from feilun.core.errors import ConfigError, PluginError
from feilun.core.overrides import (
    Part,
    Yaml,
    apply_overrides,
    did_you_mean,
    read_mapping,
    where,
)
from feilun.core.registry import lookup, names

logger = logging.getLogger(__name__)

_TOP_KEYS = ("description", "operators")


class OperatorEntry(pydantic.BaseModel):
    """One `operators:` entry: `op` plus that operator's own parameters."""

    model_config = pydantic.ConfigDict(extra="allow")
    op: str = pydantic.Field(description="Registered operator name (`feilun.operators` group).")


class RecipeFile(pydantic.BaseModel):
    """The YAML file of a cleaning recipe."""

    model_config = pydantic.ConfigDict(extra="forbid")
    description: str = pydantic.Field(description="What the recipe does, in a sentence.")
    operators: list[OperatorEntry] = pydantic.Field(
        min_length=1, description="Operators run in order; each is `{op: <name>, <params…>}`."
    )


@dataclass(frozen=True)
class Step:
    """One operator of a recipe, built and ready to run."""

    op: str  # the registered name, as written in the recipe
    operator: Any  # a RowOperator or a SetOperator (see feilun.data.items)
    params: dict[str, Any]  # validated, defaults filled in (JSON values)

    @property
    def is_set_operator(self) -> bool:
        """Whether the operator decides over the whole set (`key` + `select`)."""
        return not callable(getattr(self.operator, "process", None))

    @property
    def version(self) -> str:
        """The operator's version, recorded in every dataset it helps make."""
        return str(getattr(self.operator, "version", ""))


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: its description and its steps."""

    description: str
    steps: tuple[Step, ...]
    source: str = ""  # the file it was loaded from, if any

    def resolved(self) -> dict[str, Any]:
        """The recipe as run: every operator with its version and full params (for manifests)."""
        return {
            "description": self.description,
            "source": self.source,
            "operators": [
                {"op": s.op, "version": s.version, "params": s.params} for s in self.steps
            ],
        }


def recipe_of(operators: list[Any], description: str = "") -> Recipe:
    """A recipe of already-built operators (from code rather than a YAML file)."""
    steps = []
    for operator in operators:
        _check_shape(operator, type(operator).name)
        params = getattr(operator, "params", None)
        dumped = params.model_dump(mode="json") if isinstance(params, pydantic.BaseModel) else {}
        steps.append(Step(op=type(operator).name, operator=operator, params=dumped))
    return Recipe(description=description, steps=tuple(steps))


def load_recipe(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Load, override (`operators[2].threshold=0.9`, `near_dedup.threshold=0.9`) and validate."""
    import yaml

    path = Path(path)
    syntax = Yaml(yaml.safe_load, yaml.YAMLError)
    raw = read_mapping(
        path,
        syntax,
        shape="with `description` and `operators`",
        shipped="shipped recipes are under recipes/data/",
        start="start from recipes/data/default.yaml",
    )

    def resolve(parts: list[Part], override: str) -> list[Part]:
        return _resolve_op_name(raw, parts, override, path)

    apply_overrides(
        raw,
        overrides,
        syntax,
        example="`operators[2].threshold=0.9` or `near_dedup.threshold=0.9`",
        resolve=resolve,
    )
    return validate_recipe(raw, str(path))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe given as a dict (the parsed YAML), building each operator."""
    try:
        parsed = RecipeFile.model_validate(raw)
    except pydantic.ValidationError as e:
        raise _config_error(source, e, (), "see recipes/data/default.yaml for the shape") from e
    steps = [_build_step(entry, i, source) for i, entry in enumerate(parsed.operators)]
    return Recipe(description=parsed.description, steps=tuple(steps), source=source)


def _build_step(entry: OperatorEntry, index: int, source: str) -> Step:
    where = f"operators[{index}]"
    try:
        cls = lookup("operators", entry.op)
    except PluginError as e:
        raise ConfigError(f"{source}: {where}.op: {e.message}", e.fix) from e
    given = dict(entry.model_extra or {})
    params_type = getattr(cls, "Params", None)
    if params_type is None:
        if given:
            raise ConfigError(
                f"{source}: {where}: operator {entry.op!r} takes no parameters, got "
                f"{', '.join(sorted(given))}",
                f"remove them, leaving only `op: {entry.op}`",
            )
        operator = cls()
        params: dict[str, Any] = {}
    else:
        try:
            validated = params_type.model_validate(given)
        except pydantic.ValidationError as e:
            raise _config_error(source, e, ("operators", index), _params_help(entry.op, cls)) from e
        operator = cls(validated)
        params = validated.model_dump(mode="json")
    _check_shape(operator, entry.op)
    return Step(op=entry.op, operator=operator, params=params)


def _check_shape(operator: Any, name: str) -> None:
    is_row = callable(getattr(operator, "process", None))
    is_set = all(callable(getattr(operator, m, None)) for m in ("key", "select"))
    if is_row == is_set or not getattr(operator, "name", "") or not hasattr(operator, "version"):
        raise PluginError(
            f"operator {name!r} ({type(operator).__qualname__}) is neither a row operator "
            "(`process`) nor a set operator (`key` + `select`) with `name` and `version`",
            "implement feilun.data.items.RowOperator or SetOperator",
        )


def _params_help(op: str, cls: Any) -> str:
    fields = cls.Params.model_fields
    if not fields:
        return f"operator {op!r} takes no parameters; leave only `op: {op}`"
    listed = "; ".join(
        f"{name} ({field.description or 'no description'})" for name, field in fields.items()
    )
    return f"parameters of {op!r}: {listed}"


def _config_error(
    source: str, error: pydantic.ValidationError, prefix: tuple[Any, ...], fix: str
) -> ConfigError:
    first = error.errors()[0]
    key = where(prefix + tuple(first["loc"])) or "(top level)"
    got = "" if first["type"] == "missing" else f" (got {first['input']!r})"
    more = f" (and {error.error_count() - 1} more problem(s))" if error.error_count() > 1 else ""
    return ConfigError(f"{source}: {key}: {first['msg']}{got}{more}", fix)


def _resolve_op_name(
    raw: dict[str, Any], parts: list[Part], override: str, path: Path
) -> list[Part]:
    """`near_dedup.threshold` means `operators[i].threshold` for the one near_dedup entry."""
    head = parts[0]
    if head in _TOP_KEYS:
        return parts
    if len(parts) < 2:
        raise ConfigError(
            f"override {override!r}: unknown key {head!r}{did_you_mean(str(head), _TOP_KEYS)}",
            "use description=…, operators[i].<param>=… or <op>.<param>=…",
        )
    operators = raw.get("operators")
    entries: list[Any] = operators if isinstance(operators, list) else []
    found = [i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("op") == head]
    if not found:
        used = sorted({str(e.get("op")) for e in entries if isinstance(e, dict)})
        raise ConfigError(
            f"override {override!r}: {head!r} is not an operator of {path} "
            f"(it uses: {', '.join(used) or 'none'}; registered: {', '.join(names('operators'))})",
            f"override one of its operators, or add `- op: {head}` to the recipe",
        )
    if len(found) > 1:
        raise ConfigError(
            f"override {override!r}: {head!r} appears more than once in {path}",
            f"address the entry by position instead, e.g. operators[{found[0]}].{parts[1]}=…",
        )
    return ["operators", found[0], *parts[1:]]
