"""A policy's `traces` and `labels` sections: defaults, and bad values named as written."""

from __future__ import annotations

import pytest

from feilun.core.errors import ConfigError
from feilun.governance.moderation import Policy, policy_from_dict


def test_defaults_mask_pii_in_traces_and_leave_api_answers_unlabelled() -> None:
    policy = Policy()
    assert (policy.traces.pii, policy.labels.api, policy.labels.producer) == (
        "mask",
        False,
        "feilun",
    )
    values = {"traces": {"pii": "keep"}, "labels": {"api": True, "producer": "acme"}}
    policy = policy_from_dict(values)
    assert policy.traces.pii == "keep" and policy.labels.producer == "acme"
    assert policy.model_dump(mode="json", exclude_defaults=True) == values


def test_bad_sections_are_named() -> None:
    with pytest.raises(ConfigError, match=r"p.yaml: traces.pii='drop'"):
        policy_from_dict({"traces": {"pii": "drop"}}, source="p.yaml")
    with pytest.raises(ConfigError, match=r"labels.producer=''"):
        policy_from_dict({"labels": {"producer": ""}})
    with pytest.raises(ConfigError, match=r"labels.apis"):
        policy_from_dict({"labels": {"apis": True}})
