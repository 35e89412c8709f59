"""Curation rules: the shipped file loads, overrides apply, bad keys and values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from feilun.core.errors import ConfigError
from feilun.feedback.rules import load_rules

RULES = Path(__file__).parents[2] / "recipes" / "flywheel" / "curate.yaml"


def test_the_shipped_rules_load_and_take_overrides() -> None:
    rules = load_rules(RULES, ["eval.share=0.25", "dedup.against=[handbook-qa]"])
    assert rules.eval.share == 0.25 and rules.dedup.against == ["handbook-qa"]
    policy = rules.policy_path()
    assert policy == RULES.parent / "../governance/default.yaml" and policy.is_file()
    assert (rules.votes.up_min_stars, rules.pii.action, rules.tenants) == (4, "mask", None)


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("eval.shares=0.3", "eval.shares (did you mean eval.share?)"),
        ("eval.share=1.5", "eval.share=1.5"),
        ("pii.action=hide", "pii.action='hide'"),
        ("votes.down_max_stars=4", "votes.down_max_stars=4 must be < votes.up_min_stars=4"),
    ],
)
def test_bad_rules_name_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_rules(RULES, [override])
    assert named in str(caught.value)


def test_a_missing_file_says_where_the_shipped_one_is(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipes/flywheel/curate.yaml"):
        load_rules(tmp_path / "nope.yaml")
