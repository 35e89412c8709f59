"""Shared fixtures: a tiny model folder and an isolated workspace environment."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A save_pretrained folder of a tiny random Llama with a real small tokenizer."""
    from feilun.models.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment variables pointing Feilun at a fresh workspace path (not yet created)."""
    return {"FEILUN_WORKSPACE": str(tmp_path / "ws")}
