"""YAML recipe files as mappings: reading them, dotted `key=value` overrides, unknown keys.

Shared by the stages configured by recipes (training, data cleaning). Core stays stdlib +
pydantic, so callers hand in their YAML loader as a `Yaml` (parse function and error type).
Every error names the file or override as the user wrote it, and says how to fix it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from feilun.core.errors import ConfigError

Part = str | int  # one step of a key path: a mapping key or a list position
Resolve = Callable[[list[Part], str], list[Part]]  # (parts, override) → the parts to set
_INDEXED = re.compile(r"^(?P<key>[A-Za-z_][\w-]*)\[(?P<index>\d+)\]$")


@dataclass(frozen=True)
class Yaml:
    """A YAML parser: `load(text)` (e.g. `yaml.safe_load`) and the error type it raises."""

    load: Callable[[str], Any]
    error: type[Exception]

    def parse(self, text: str, source: str) -> Any:
        """The parsed value; a ConfigError naming `source`, line and column when invalid."""
        try:
            return self.load(text)
        except self.error as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(
                f"{source} is not valid YAML{where}: {getattr(e, 'problem', None) or e}",
                "fix the YAML syntax (indentation, a missing ':' or an unclosed quote)",
            ) from e


def read_mapping(path: Path, yaml: Yaml, *, shape: str, shipped: str, start: str) -> dict[str, Any]:
    """The recipe file at `path` parsed into a mapping.

    `shape` says what the mapping holds (`of keys`), `shipped` where shipped recipes are and
    `start` which one to start from; they go into the errors.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"cannot read recipe {path}: {e.strerror or e}", f"check the path; {shipped}"
        ) from e
    raw = yaml.parse(text, f"recipe {path}")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"recipe {path} must be a mapping {shape}, got {type(raw).__name__}", start
        )
    return raw


def apply_overrides(
    raw: dict[str, Any],
    overrides: Sequence[str],
    yaml: Yaml,
    *,
    example: str,
    resolve: Resolve | None = None,
) -> None:
    """Set each `dotted.key=value` in `raw`, in order; values are read as YAML (`1e-4`, `[a]`).

    Keys are dotted names; `name[2]` or `name.2` picks a list item. Missing mappings on the
    way are created (validation then names unknown keys); list items must exist. `resolve`
    may rewrite the parts first (e.g. an operator's name to its position).
    """
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r} is not key=value", f"write it like {example}")
        parts = _split_key(key.strip(), override)
        if resolve is not None:
            parts = resolve(parts, override)
        _set(raw, parts, yaml.parse(text, f"override {override!r}"), override)


def closest(key: str, known: Sequence[str]) -> str | None:
    """The known key closest to `key`, if one is close enough to be a likely misspelling."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(key: str, known: Sequence[str]) -> str:
    """` (did you mean X?)` with the closest known key, or nothing."""
    near = closest(key, known)
    return f" (did you mean {near}?)" if near else ""


def known_keys(model: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of a pydantic model, sections and their fields alike."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
            keys += known_keys(annotation, f"{prefix}{name}.")
    return keys


def unknown_keys(error: pydantic.ValidationError, model: type[pydantic.BaseModel]) -> list[str]:
    """The keys `model` refused as unknown, each with the closest known key when there is one."""
    known = known_keys(model)
    named = [".".join(str(p) for p in e["loc"]) for e in error.errors()]
    return [
        key + did_you_mean(key, known)
        for key, e in zip(named, error.errors(), strict=True)
        if e["type"] == "extra_forbidden"
    ]


def where(parts: Sequence[Part]) -> str:
    """A key path as written: `operators[2].threshold`."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _split_key(key: str, override: str) -> list[Part]:
    parts: list[Part] = []
    for piece in key.split("."):
        match = _INDEXED.match(piece)
        if match:
            parts += [match.group("key"), int(match.group("index"))]
        elif piece.isdigit():
            parts.append(int(piece))
        elif piece:
            parts.append(piece)
        else:
            raise ConfigError(f"override {override!r} has an empty key part", "remove the '..'")
    return parts


def _set(raw: dict[str, Any], parts: list[Part], value: Any, override: str) -> None:
    target: Any = raw
    for depth, part in enumerate(parts):
        is_last = depth == len(parts) - 1
        if isinstance(target, dict) and isinstance(part, str):
            if is_last:
                target[part] = value
                return
            target = target.setdefault(part, {})
        elif isinstance(target, list) and isinstance(part, int) and part < len(target):
            if is_last:
                target[part] = value
                return
            target = target[part]
        elif depth and not isinstance(target, dict | list):
            raise ConfigError(
                f"override {override!r}: {where(parts[:depth])} is a value, not a section",
                "override the value itself",
            )
        else:
            raise ConfigError(
                f"override {override!r}: {where(parts[: depth + 1])} does not exist",
                "check the key against the recipe file",
            )
