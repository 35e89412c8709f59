"""Curation rules: which feedback becomes SFT rows, preference pairs and eval items.

One YAML file (recipes/flywheel/curate.yaml) of the keys below; `feilun feedback curate
--rules FILE key=value ...` overrides any of them. Paths in the file (the moderation policy)
are read relative to the file's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import pydantic

from feilun.core.errors import ConfigError
from feilun.core.overrides import Yaml, apply_overrides, read_mapping, unknown_keys

SHIPPED = "recipes/flywheel/curate.yaml"


class _Section(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class VoteRules(_Section):
    """How ratings read as votes."""

    up_min_stars: int = pydantic.Field(
        4, ge=1, le=5, description="A star rating at or above this is an up-vote."
    )
    down_max_stars: int = pydantic.Field(
        2, ge=1, le=5, description="A star rating at or below this is a down-vote."
    )


class SftRules(_Section):
    """Which answers become SFT (chat `messages`) rows."""

    use_corrections: bool = pydantic.Field(
        True, description="A corrected answer becomes an example (the correction as the answer)."
    )
    use_upvotes: bool = pydantic.Field(
        True, description="An up-voted answer without a correction becomes an example as it is."
    )


class PreferenceRules(_Section):
    """Which pairs become preference (`prompt`/`chosen`/`rejected`) rows."""

    use_corrections: bool = pydantic.Field(
        True, description="The corrected answer is chosen over the original one."
    )
    use_vote_pairs: bool = pydantic.Field(
        True, description="An up-voted answer is chosen over a down-voted one to the same prompt."
    )


class EvalRules(_Section):
    """Which corrected down-votes are held out as eval items (never trained on)."""

    share: float = pydantic.Field(
        0.5,
        ge=0,
        le=1,
        description="Share of prompts with a corrected down-vote held out as QA eval items; "
        "all feedback on a held-out prompt stays out of the SFT and preference rows.",
    )
    seed: int = pydantic.Field(0, ge=0, description="Seed of the (stable, per-prompt) split.")


class PiiRules(_Section):
    """Personal data in prompts and answers (the data stage's `pii` operator)."""

    action: Literal["mask", "drop", "keep"] = pydantic.Field(
        "mask", description="mask it, drop the example, or keep it as is."
    )
    mask_language: Literal["zh", "en"] = pydantic.Field(
        "zh", description="Language of the masks: zh → [身份证号], en → [ID_CARD]."
    )


class ModerationRules(_Section):
    """Examples whose prompt or answer the moderation policy refuses or blocks are dropped."""

    policy: str | None = pydantic.Field(
        None,
        description="Moderation policy YAML (relative to this file); empty: the default policy.",
    )
    use_classifier: bool = pydantic.Field(
        True, description="Also use the workspace's trained classifier, when it has one."
    )


class DedupRules(_Section):
    """Duplicates of earlier rows (previous versions, `against`) or of each other are dropped."""

    use_exact: bool = pydantic.Field(True, description="Drop exact duplicates (whitespace aside).")
    near_threshold: float | None = pydantic.Field(
        0.85,
        gt=0,
        le=1,
        description="MinHash Jaccard at which an example is a near duplicate; empty: off.",
    )
    against: list[str] = pydantic.Field(
        default_factory=list,
        description="More datasets (NAME, NAME@3) whose rows the new examples must not repeat.",
    )


class CurationRules(_Section):
    """Everything `curate_feedback` needs besides the workspace and the dataset name."""

    description: str = pydantic.Field("", description="What these rules are for.")
    tenants: list[str] | None = pydantic.Field(
        None, description="Only feedback of these tenants (names or ids); empty: every tenant."
    )
    votes: VoteRules = pydantic.Field(default_factory=VoteRules)
    sft: SftRules = pydantic.Field(default_factory=SftRules)
    preference: PreferenceRules = pydantic.Field(default_factory=PreferenceRules)
    eval: EvalRules = pydantic.Field(default_factory=EvalRules)
    pii: PiiRules = pydantic.Field(default_factory=PiiRules)
    moderation: ModerationRules = pydantic.Field(default_factory=ModerationRules)
    dedup: DedupRules = pydantic.Field(default_factory=DedupRules)
    base_dir: Path = pydantic.Field(
        Path("."), exclude=True, description="Folder relative paths are read from (the file's)."
    )

    @pydantic.model_validator(mode="after")
    def _check_votes(self) -> Self:
        if self.votes.down_max_stars >= self.votes.up_min_stars:
            raise ValueError(
                f"votes.down_max_stars={self.votes.down_max_stars} must be < "
                f"votes.up_min_stars={self.votes.up_min_stars}"
            )
        return self

    def policy_path(self) -> Path | None:
        """The moderation policy file, resolved against the rules file's folder."""
        if not self.moderation.policy:
            return None
        return self.base_dir / Path(self.moderation.policy).expanduser()


def load_rules(path: Path | str, overrides: list[str] | tuple[str, ...] = ()) -> CurationRules:
    """Read, override (`eval.share=0.3`) and validate curation rules; errors name the key."""
    import yaml

    path = Path(path)
    syntax = Yaml(yaml.safe_load, yaml.YAMLError)
    raw = read_mapping(
        path,
        syntax,
        shape="of curation keys",
        shipped=f"the shipped rules are {SHIPPED}",
        start=f"start from {SHIPPED}",
    )
    apply_overrides(raw, overrides, syntax, example="`eval.share=0.3`")
    return validate_rules(raw, str(path), path.parent)


def validate_rules(raw: dict[str, object], source: str, base_dir: Path) -> CurationRules:
    """Rules from plain values, naming the key the user wrote on a bad value."""
    try:
        return CurationRules.model_validate({**raw, "base_dir": base_dir})
    except pydantic.ValidationError as e:
        unknown = unknown_keys(e, CurationRules)
        if unknown:
            raise ConfigError(
                f"{source}: unknown keys {', '.join(unknown)}", f"see {SHIPPED} for every key"
            ) from e
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'rules'}={err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"{source}: {problems}", f"see {SHIPPED} for the allowed values") from e
