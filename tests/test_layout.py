"""Repository rules a reviewer would otherwise have to remember."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "feilun"
MAX_MODULE_LINES = 800


def test_no_module_is_too_long() -> None:
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"split these modules (limit {MAX_MODULE_LINES} lines): {too_long}"


def test_no_grab_bag_modules() -> None:
    banned = {"utils.py", "helpers.py", "manager.py"}
    assert not [p for p in SRC.rglob("*.py") if p.name in banned]


def test_every_registered_backend_lives_at_its_file_stem() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for group, entries in project["project"]["entry-points"].items():
        for name, target in entries.items():
            module = target.split(":")[0]
            assert module.rsplit(".", 1)[1] == name, (group, name, target)
            assert (ROOT / "src" / (module.replace(".", "/") + ".py")).is_file(), target


def test_dependencies_are_pinned() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    deps = list(project["project"]["dependencies"])
    for extra in project["project"]["optional-dependencies"].values():
        deps += [d for d in extra if not d.startswith("feilun[")]
    assert all("==" in d for d in deps), [d for d in deps if "==" not in d]
