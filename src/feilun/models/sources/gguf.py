"""GGUF files: read the card from the header; dequantise once into a cached safetensors folder.

transformers loads GGUF (`gguf_file=`) by dequantising every tensor, ~12 s for SmolLM2-135M
on 2 cores; the converted folder is cached by file digest so later loads take about a second.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from feilun.core.errors import ArtifactError
from feilun.models.sources import SourceInfo
from feilun.models.sources.files import publish_folder, sha256_file
from feilun.models.sources.safetensors import SOURCE as SAFETENSORS

log = logging.getLogger(__name__)
_MAGIC = b"GGUF"
_FIX = "re-download or re-export the GGUF file (the file is corrupt or truncated)"


def _field(reader: Any, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _read_header(path: Path) -> Any:
    from gguf import GGUFReader

    with path.open("rb") as f:
        magic = f.read(4)
    if magic != _MAGIC:
        raise ArtifactError(
            f"{path} is not a GGUF file (starts with {magic!r}, expected {_MAGIC!r})",
            "pass a .gguf file to --gguf, or a save_pretrained folder to --path",
        )
    try:
        reader = GGUFReader(path)
    except (ValueError, IndexError, OSError) as e:
        raise ArtifactError(f"cannot read GGUF file {path}: {e}", _FIX) from e
    size_bytes = path.stat().st_size
    data_end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if data_end > size_bytes:
        raise ArtifactError(
            f"GGUF file {path} is truncated: tensors end at byte {data_end}, file has {size_bytes}",
            _FIX,
        )
    return reader


class GgufSource:
    """A single GGUF file (llama.cpp's format), dequantised to fp32 for transformers."""

    def inspect(self, location: str) -> SourceInfo:
        """Validate the header and read architecture, size, context and chat template."""
        path = Path(location).expanduser().resolve()
        if not path.is_file():
            raise ArtifactError(f"GGUF file {path} does not exist", "check the path")
        stat = path.stat()
        return _inspect(path, stat.st_size, stat.st_mtime_ns)

    def load(self, location: str, cache_dir: Path) -> tuple[Any, Any]:
        """Load from the converted cache, converting the GGUF file on first use."""
        path = Path(location).expanduser()
        converted = cache_dir / f"gguf-{sha256_file(path)[:16]}"
        if not converted.is_dir():
            log.info("converting %s to safetensors in %s (once)", path, converted)
            publish_folder(converted, lambda staging: _convert(path, staging))
        return SAFETENSORS.load(str(converted), cache_dir)


@functools.lru_cache(maxsize=16)
def _inspect(path: Path, size_bytes: int, mtime_ns: int) -> SourceInfo:
    """Parse the header once per file version (parsing a 49k-token vocabulary takes ~2 s)."""
    reader = _read_header(path)
    architecture = str(_field(reader, "general.architecture", "unknown"))
    return SourceInfo(
        architecture=architecture,
        parameters=sum(int(t.n_elements) for t in reader.tensors),
        context_length=int(_field(reader, f"{architecture}.context_length", 0)),
        chat_template=str(_field(reader, "tokenizer.chat_template", "")),
        sha256=sha256_file(path),
        extra={"gguf_name": str(_field(reader, "general.name", ""))},
    )


def _convert(path: Path, out: Path) -> None:
    """Dequantise a GGUF file into a save_pretrained-style folder."""
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as e:
        raise ArtifactError(f"transformers cannot load GGUF file {path}: {e}", _FIX) from e
    # save_pretrained refuses GGUF-loaded models; the weights are plain fp32 tensors by now.
    save_model(model, str(out / "model.safetensors"))
    model.config.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


SOURCE = GgufSource()
