"""The Ray Data engine gives exactly what the local engine gives, on the shared sample."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from feilun.core.errors import PluginError
from feilun.core.records import Document
from feilun.data.datasets import item_row, save_dataset
from feilun.data.items import Item, Rejection
from feilun.data.pipeline import PipelineResult, items_from_documents, run_pipeline
from feilun.data.recipes import Recipe, load_recipe, recipe_of, validate_recipe
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import open_database
from feilun.store.migrate import upgrade

ROOT = Path(__file__).parents[2]
SAMPLE = Path("../shared/data/industry/docs")


class Squash:
    """Collapses runs of whitespace (a row operator that rewrites)."""

    name: ClassVar[str] = "squash"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> Item:
        item.text = " ".join(item.text.split())
        return item


class MinChars:
    name: ClassVar[str] = "min_chars"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> Item | Rejection:
        if len(item.text) < 30:
            return Rejection(item, "min_chars", f"too_short: {len(item.text)} chars < 30")
        return item


class FirstOfLength:
    """A set operator with a deliberately coarse key: keeps the first item of each length."""

    name: ClassVar[str] = "first_of_length"
    version: ClassVar[str] = "1"

    def key(self, item: Item) -> int:
        return len(item.text)

    def select(self, keyed: Sequence[tuple[str, Any]]) -> dict[str, str]:
        first: dict[int, str] = {}
        return {i: f"same_length: as {first[k]}" for i, k in keyed if first.setdefault(k, i) != i}


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # Workers import operators by module name; these test classes live in no importable module.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Started here, so the engine's reuse of an existing session is what the tests exercise.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def sample_documents() -> list[Document]:
    """The industry regulations under 100 kB (all 11 Chinese, one English), one row per
    paragraph (so the tabular path is used too): 2,600 items, small enough for a fast test.
    """
    docs = []
    for path in sorted(p for p in SAMPLE.glob("*/*.md") if p.stat().st_size < 100_000):
        text = path.read_text(encoding="utf-8")
        starts = [0] + [i + 2 for i in range(len(text)) if text.startswith("\n\n", i)]
        docs.append(
            Document(
                name=path.name,
                collection="industry",
                source=str(path),
                language=path.parent.name,
                text=text,
                meta={"row_starts": starts},
            )
        )
    return docs


def sample_items() -> list[Item]:
    items = items_from_documents(sample_documents())
    # Plant copies of real paragraphs: exact ones, and near ones with a few characters changed.
    long = [i for i in items if len(i.text) > 120]
    planted = [Item(f"copy-{n}", i.text, dict(i.meta)) for n, i in enumerate(long[::50])]
    planted += [
        Item(f"near-{n}", i.text[:-3] + "...", dict(i.meta)) for n, i in enumerate(long[7::60])
    ]
    return items + planted


def summary(result: PipelineResult) -> tuple[Any, ...]:
    return (
        result.kept,
        result.rejected,
        [
            (r.operator, r.version, r.count_in, r.count_out, r.removed_by_reason)
            for r in result.reports
        ],
    )


def content_hash(tmp_path: Path, name: str, result: PipelineResult, recipe: Recipe) -> str:
    """Save the result as a dataset in a workspace of its own; its content hash."""
    tmp_path.mkdir()
    db = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(db)
    try:
        saved = save_dataset(
            SqlCatalog(db),
            ArtifactStore(tmp_path / "artifacts"),
            name,
            [item_row(i) for i in result.kept],
            recipe=recipe,
            reports=result.reports,
            rejected=result.rejected,
        )
    finally:
        db.close()
    return saved.content_hash


def test_default_recipe_on_ray_matches_local_on_the_shared_sample(
    ray_session: None, tmp_path: Path
) -> None:
    items = sample_items()
    recipe = load_recipe(ROOT / "recipes" / "data" / "default.yaml")
    local = run_pipeline(items, recipe, engine="local")
    on_ray = run_pipeline(items, recipe, engine="ray")
    assert summary(on_ray) == summary(local)
    removed = {r.item.id: r.operator for r in local.rejected}
    planted = {removed.get(i.id) for i in items if i.id.startswith(("copy-", "near-"))}
    assert None not in planted  # every planted copy is gone (a few fail quality, as the original)
    assert {"exact_dedup", "near_dedup"} <= planted
    assert content_hash(tmp_path / "a", "local", local, recipe) == content_hash(
        tmp_path / "b", "ray", on_ray, recipe
    )


def test_stages_around_several_set_operators(ray_session: None) -> None:
    items = [i for i in sample_items() if i.meta["language"] == "zh"]
    dedup = validate_recipe(
        {"description": "dedup", "operators": [{"op": "exact_dedup"}, {"op": "near_dedup"}]}
    )
    exact, near = (step.operator for step in dedup.steps)
    # Stages on Ray: [squash, min_chars, exact_dedup], [squash, near_dedup], [first_of_length].
    recipe = recipe_of([Squash(), MinChars(), exact, Squash(), near, FirstOfLength()])
    local = run_pipeline(items, recipe, engine="local")
    seen: dict[int, tuple[int, int | None]] = {}

    def progress(step: int, operator: str, done: int, total: int | None) -> None:
        seen[step] = (done, total)

    assert summary(run_pipeline(items, recipe, engine="ray", progress=progress)) == summary(local)
    assert seen == {n: (r.count_in, r.count_in) for n, r in enumerate(local.reports)}
    counts = {r.operator: r.removed_by_reason for r in local.reports}
    assert counts["min_chars"]["too_short"] > 0
    assert counts["first_of_length"]["same_length"] > 0


def test_ray_handles_empty_input_and_set_operator_first(ray_session: None) -> None:
    recipe = recipe_of([FirstOfLength(), Squash()])
    assert summary(run_pipeline([], recipe, engine="ray")) == summary(run_pipeline([], recipe))
    items = [Item(f"i{n}", t) for n, t in enumerate(["aa", "b b", "cc", "d  d", "eee"])]
    assert summary(run_pipeline(items, recipe, engine="ray")) == summary(
        run_pipeline(items, recipe)
    )


class ReturnsNone:
    name: ClassVar[str] = "returns_none"
    version: ClassVar[str] = "1"

    def process(self, item: Item) -> None:
        return None


def test_an_operators_feilun_error_on_a_worker_is_raised_as_itself(ray_session: None) -> None:
    items = [Item("a", "some text")]
    with pytest.raises(PluginError, match="'returns_none' returned NoneType for item 'a'") as e:
        run_pipeline(items, recipe_of([Squash(), ReturnsNone()]), engine="ray")
    assert "row operator's process() must return" in (e.value.fix or "")


def test_importing_the_ray_engine_does_not_import_ray() -> None:
    code = "import sys, feilun.data.engines.ray; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
