"""Adapters on their base model: load a PEFT adapter onto base weights, or merge it into them.

An Adapter record names its folder (`meta.location`) and the sha256 of each file in it
(`meta.files`); files are checked before loading, so a changed or missing file fails clearly
instead of serving different weights. Merged folders are published atomically.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from feilun.core import registry as plugins
from feilun.core.errors import ArtifactError, ConfigError
from feilun.core.records import Adapter
from feilun.models.registry import Resolved
from feilun.models.sources.files import publish_folder, sha256_file

log = logging.getLogger(__name__)


def adapter_folder(adapter: Adapter) -> Path:
    """The adapter's PEFT folder, its files verified against the digests in the record."""
    location = Path(str(adapter.meta.get("location", "")))
    files: dict[str, str] = dict(adapter.meta.get("files") or {})
    if not files or not location.is_dir():
        raise ArtifactError(
            f"adapter {adapter.ref} has no folder at {location}",
            f"its files are in the artifact store (manifest {adapter.artifact}); "
            "re-run the training run that made it, or restore its run folder",
        )
    for name, digest in files.items():
        path = location / name
        if not path.is_file() or f"sha256:{sha256_file(path)}" != digest:
            raise ArtifactError(
                f"adapter {adapter.ref}: {path} is missing or changed (expected {digest})",
                "restore the run folder, or re-run the training run that made it",
            )
    return location


def load_adapter(model: Any, adapter: Adapter) -> Any:
    """`model` with the adapter applied on top (a PEFT model, in eval mode)."""
    from peft import PeftModel

    folder = str(adapter_folder(adapter))
    with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated
        warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
        return PeftModel.from_pretrained(model, folder).eval()


def merge_adapter(model: Any, adapter: Adapter) -> Any:
    """Base weights with the adapter folded in: a plain transformers model."""
    if adapter.method == "full":
        raise ConfigError(f"{adapter.ref} holds full weights", "serve it as a base model")
    return load_adapter(model, adapter).merge_and_unload().eval()


def write_merged(resolved: Resolved, cache_dir: Path, out: Path) -> Path:
    """Write base + adapter merged as a safetensors model folder at `out` (atomically)."""
    adapter, base = resolved.adapter, resolved.base
    if adapter is None:
        raise ConfigError(
            f"{resolved.ref} is a base model, there is nothing to merge",
            "name an adapter on it: `BASE:ADAPTER` (see `feilun models show BASE`)",
        )
    if out.exists():
        raise ConfigError(f"{out} exists", "pass a new folder to --out")
    model, tokenizer = plugins.lookup("model_sources", base.source).load(base.location, cache_dir)
    merged = merge_adapter(model, adapter)

    def write(staging: Path) -> None:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if adapter.chat_template:
            (staging / "chat_template.jinja").write_text(adapter.chat_template, encoding="utf-8")

    publish_folder(out, write)
    log.info("merged %s into %s", adapter.ref, out)
    return out
