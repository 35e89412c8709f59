"""The docs' ```bash and ```python examples run as written (paths moved into a temp folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[2] / "docs"
FENCE = re.compile(r"```(bash|python)\n(.*?)```", re.DOTALL)
PAGES = sorted(DOCS.glob("*.md"))
# Pages whose examples take over a minute (servers, training, turns) run in `make test-all`.
HEAVY = {"flywheel.md", "governance.md", "serving.md", "training.md"}


def _blocks(page: Path) -> list[tuple[str, str]]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


@pytest.mark.timeout(900)  # a page is a whole session: several servers, models, indexes
@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=[pytest.mark.slow] if p.name in HEAVY else []) for p in PAGES],
    ids=[p.name for p in PAGES],
)
def test_examples_run(page: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    env.pop("FEILUN_WORKSPACE", None)
    for language, code in _blocks(page):
        code = code.replace("/tmp/feilun-docs", str(tmp_path / "feilun-docs"))
        command = ["bash", "-euo", "pipefail", "-c", code]
        if language == "python":
            command = [sys.executable, "-c", code]
        result = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{page.name}:\n{code}\n{result.stdout}\n{result.stderr}"


def test_every_page_is_linked_from_the_index() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    for page in PAGES:
        if page.name != "index.md":
            assert f"({page.name})" in index, page.name
