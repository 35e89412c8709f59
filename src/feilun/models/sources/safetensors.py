"""Safetensors model folders, as written by `save_pretrained` (config.json + *.safetensors)."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from feilun.core.errors import ArtifactError
from feilun.models.sources import SourceInfo

_FOLDER_FIX = (
    "point --path at a folder saved with save_pretrained (config.json, *.safetensors and the "
    "tokenizer files), or register a single file with --gguf FILE"
)


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _count_parameters(files: list[Path]) -> int:
    """Sum of tensor sizes read from the safetensors headers, without loading weights."""
    total = 0
    for path in files:
        with path.open("rb") as f:
            try:
                (header_len,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(header_len))
            except (struct.error, ValueError) as e:
                raise ArtifactError(
                    f"{path} is not a valid safetensors file ({e})",
                    "re-export the weights with save_pretrained",
                ) from e
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for dim in tensor["shape"]:
                    count *= dim
                total += count
    return total


def _read_chat_template(folder: Path) -> str:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config_path = folder / "tokenizer_config.json"
    if config_path.is_file():
        template = json.loads(config_path.read_text(encoding="utf-8")).get("chat_template", "")
        return template if isinstance(template, str) else ""
    return ""


def _folder_digest(files: list[Path]) -> str:
    """sha256 over the weight files' names and bytes, in name order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


class SafetensorsSource:
    """A local folder of safetensors weights with config and tokenizer."""

    def inspect(self, location: str) -> SourceInfo:
        """Check the folder is a model and read its card facts."""
        folder = Path(location).expanduser()
        if not folder.is_dir():
            raise ArtifactError(f"{folder} is not a folder", _FOLDER_FIX)
        config_path = folder / "config.json"
        if not config_path.is_file():
            raise ArtifactError(f"{folder} is not a model folder: no config.json", _FOLDER_FIX)
        files = _weight_files(folder)
        if not files:
            raise ArtifactError(f"{folder} is not a model folder: no *.safetensors", _FOLDER_FIX)
        try:
            config: dict[str, Any] = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ArtifactError(f"{config_path} is not valid JSON: {e}", _FOLDER_FIX) from e
        architectures = config.get("architectures") or [config.get("model_type", "unknown")]
        return SourceInfo(
            architecture=str(architectures[0]),
            parameters=_count_parameters(files),
            context_length=int(config.get("max_position_embeddings", 0)),
            chat_template=_read_chat_template(folder),
            sha256=_folder_digest(files),
        )

    def load(self, location: str, cache_dir: Path) -> tuple[Any, Any]:
        """Load model (fp32) and tokenizer from the folder."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ArtifactError(f"cannot load the model in {location}: {e}", _FOLDER_FIX) from e
        model.train(mode=False)  # inference mode: no dropout
        return model, tokenizer


SOURCE = SafetensorsSource()
