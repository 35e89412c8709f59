"""Canary: a share of an alias's resolutions goes to the candidate until promoted or rolled back."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from feilun.app.flywheel import rollback, run_turn
from feilun.app.workspace import Workspace
from feilun.core.errors import ConfigError
from feilun.models.registry import pick_target

from .conftest import tiny_config

DRAWS = 20_000


@pytest.fixture
def two_models(ws: Workspace) -> Workspace:
    """`tiny` and the same weights as `tiny-b`; `prod` on tiny."""
    ws.models.add("tiny-b", "safetensors", ws.models.get("tiny").location)
    ws.models.set_alias("prod", "tiny")
    return ws


def test_the_canary_gets_its_share_of_resolutions(two_models: Workspace) -> None:
    models = two_models.models
    alias = models.set_canary("prod", "tiny-b", 0.1)
    rng = random.Random(7)
    picked = Counter(pick_target(alias, rng) for _ in range(DRAWS))
    assert abs(picked["tiny-b@1"] / DRAWS - 0.1) < 0.01  # ±4.7 sd of a binomial share
    assert picked.keys() == {"tiny@1", "tiny-b@1"}

    models.rng, expected = random.Random(7), random.Random(7)  # resolution draws the same way
    resolved = [models.resolve("prod").ref for _ in range(200)]
    assert resolved == [pick_target(alias, expected) for _ in range(200)]
    assert models.alias("prod").target == "tiny@1"  # the alias's own target is unchanged

    models.set_alias("prod", "tiny-b")  # a promotion drops the canary
    assert {models.resolve("prod").ref for _ in range(50)} == {"tiny-b@1"}


def test_canary_shares_out_of_range_are_refused(two_models: Workspace) -> None:
    with pytest.raises(ConfigError, match="out of range"):
        two_models.models.set_canary("prod", "tiny-b", 1.0)


def test_a_turn_runs_its_canary_before_promoting(ws: Workspace, tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def during(message: str) -> None:
        if message.startswith("canary:"):
            seen.update(ws.models.alias("prod").meta)

    result = run_turn(
        ws, tiny_config(tmp_path, canary={"share": 0.25, "hold_s": 0.2}), on_step=during
    )
    assert result.status == "promoted"
    assert seen["canary"] == {"target": "tiny@1:tiny@1", "share": 0.25}
    alias = ws.models.alias("prod")
    assert alias.target == "tiny@1:tiny@1" and "canary" not in alias.meta


@pytest.mark.slow
def test_rolling_back_during_the_canary_stops_the_turn(ws: Workspace, tmp_path: Path) -> None:
    moved: list[dict[str, object]] = []

    def during(message: str) -> None:
        if message.startswith("canary:"):
            moved.append(rollback(ws, "prod"))

    config = tiny_config(tmp_path, canary={"share": 0.5, "hold_s": 0.2})
    result = run_turn(ws, config, on_step=during)
    assert moved == [{"alias": "prod", "from": "tiny@1:tiny@1", "to": "tiny@1", "turn": None}]
    assert result.status == "stopped" and "canary on prod was rolled back" in result.reason
    alias = ws.models.alias("prod")
    assert alias.target == "tiny@1" and "canary" not in alias.meta


def test_a_running_gateway_splits_each_request_by_the_canary_share(
    two_models: Workspace, serve_app: Callable[[Any], AbstractContextManager[str]]
) -> None:
    from feilun.app.serve import build_server_app
    from feilun.serving.accounts import Accounts

    ws = two_models
    accounts = Accounts(ws.database)
    secret, _ = accounts.create_key(accounts.create_tenant("acme").id)
    ws.models.set_canary("prod", "tiny-b", 0.5)
    request = {"model": "prod", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    with serve_app(build_server_app(ws)) as url, httpx.Client(base_url=url) as client:
        served = Counter(
            client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {secret}"},
                json=request,
            ).json()["feilun"]["model_ref"]
            for _ in range(40)
        )
    # within one cache window both sides are served: the draw is per request, not per window
    assert served.keys() == {"tiny@1", "tiny-b@1"}
    assert min(served.values()) >= 8  # P(fewer than 8 of 40 at p=0.5) < 1e-4
