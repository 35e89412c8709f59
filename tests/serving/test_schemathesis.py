"""Property-based fuzzing of our OpenAPI schema with schemathesis: no input gets a 5xx (slow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402

from feilun.app.serve import build_server_app  # noqa: E402
from feilun.app.workspace import init_workspace  # noqa: E402
from feilun.serving.accounts import Accounts  # noqa: E402

SECRET: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Any]:
    env = {"FEILUN_WORKSPACE": str(tmp_path_factory.mktemp("fuzz") / "ws")}
    workspace, _ = init_workspace(None, env)
    workspace.models.add("tiny", "safetensors", str(tiny_model_dir))
    accounts = Accounts(workspace.database)
    accounts.create_tenant("fuzz")
    SECRET["key"], _ = accounts.create_key("fuzz", is_admin=True)
    yield schemathesis.openapi.from_asgi("/openapi.json", build_server_app(workspace))
    workspace.close()


@pytest.mark.slow
def test_no_input_gets_a_server_error(api_schema: Any) -> None:
    headers = {"Authorization": f"Bearer {SECRET['key']}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, (case.method, case.path, response.text[:300])

        check()
