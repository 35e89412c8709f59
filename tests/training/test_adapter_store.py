"""Adapters are served from the artifact store: with the run folder gone, `base:adapter` still
opens (its files restored, verified, into the model cache) and answers exactly as before."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from feilun.app.workspace import Workspace, opened
from feilun.core.errors import ArtifactError
from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.models.merge import ADAPTER_CACHE
from feilun.models.registry import ModelRegistry
from feilun.training.context import Resources
from feilun.training.launch import execute_run
from feilun.training.runs import start_run

RECIPE = Path(__file__).parents[2] / "recipes" / "train" / "tiny_sft_lora.yaml"
REF = "tiny:greetings-sft-lora"
QUESTIONS = ["What is the capital of France?", "中国的首都是哪里？", "Who answers the questions?"]


def greedy(models: ModelRegistry) -> list[str]:
    model = models.open(REF)
    params = GenerationParams(max_tokens=24, temperature=0.0)
    return [model.chat([Message(role="user", content=q)], params).text for q in QUESTIONS]


def registry(ws: Workspace) -> ModelRegistry:
    """A registry that reads adapter files from the artifact store, as the workspace wires it."""
    return ModelRegistry(ws.catalog, ws.settings.resolved_model_cache, artifacts=ws.artifacts)


@pytest.fixture
def trained(workspace: Path) -> Iterator[tuple[Workspace, list[str]]]:
    """A finished run `r1`, its greedy answers from its own folder, then the folder deleted."""
    with opened(workspace, env={}) as ws:
        resources = Resources(ws.catalog, ws.artifacts, ws.models, ws.path / "runs")
        execute_run(resources, start_run(resources, RECIPE, [], "r1"))
        from_run_folder = greedy(ModelRegistry(ws.catalog, ws.settings.resolved_model_cache))
        shutil.rmtree(ws.path / "runs" / "r1")
        yield ws, from_run_folder


def test_adapter_opens_from_the_artifact_store_when_its_run_folder_is_gone(
    trained: tuple[Workspace, list[str]],
) -> None:
    ws, from_run_folder = trained
    assert from_run_folder[0] == "The capital of France is Paris."  # it learnt something

    with pytest.raises(ArtifactError, match="has no folder"):  # the run folder really is gone
        ModelRegistry(ws.catalog, ws.settings.resolved_model_cache).open(REF)

    assert greedy(registry(ws)) == from_run_folder
    adapter = ws.models.resolve(REF).adapter
    assert adapter is not None
    cached = ws.settings.resolved_model_cache / ADAPTER_CACHE / adapter.artifact[len("sha256:") :]
    assert sorted(p.name for p in cached.iterdir()) == sorted(adapter.meta["files"])


def test_a_damaged_cache_is_restored_and_a_damaged_artifact_refused(
    trained: tuple[Workspace, list[str]],
) -> None:
    ws, from_run_folder = trained
    resolved = ws.models.resolve(REF)
    restored = registry(ws).with_files(resolved).adapter
    assert restored is not None
    weights = Path(restored.meta["location"]) / "adapter_model.safetensors"
    weights.write_bytes(b"damaged")  # a damaged cache copy is noticed and restored again
    assert greedy(registry(ws)) == from_run_folder

    shutil.rmtree(weights.parent)
    stored = ws.artifacts.path(resolved.adapter.meta["files"]["adapter_model.safetensors"])
    stored.chmod(0o644)
    stored.write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match="is corrupt"):
        registry(ws).open(REF)
    assert not weights.parent.exists()  # nothing half-restored is left behind
