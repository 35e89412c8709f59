"""Adapters on their base model: load a PEFT adapter onto base weights, or merge it into them.

An Adapter record names its folder (`meta.location`) and the sha256 of each file in it
(`meta.files`); files are checked before loading, so a changed or missing file fails clearly
instead of serving different weights. The record's `artifact` is a manifest of those files in
the artifact store: `restore_adapter` copies them, verified, into a cache folder named by the
manifest digest, so an adapter outlives its run folder. Folders are published atomically.
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from feilun.core import registry as plugins
from feilun.core.errors import ArtifactError, ConfigError
from feilun.core.records import Adapter
from feilun.models.registry import Resolved
from feilun.models.sources.files import publish_folder, sha256_file

log = logging.getLogger(__name__)
ADAPTER_CACHE = "adapters"  # under the model cache: one folder per adapter manifest digest


class ArtifactReader(Protocol):
    """Reads verified bytes by digest (what `store.artifacts.ArtifactStore.open` provides)."""

    def open(self, digest: str) -> BinaryIO:
        """A binary reader over the verified bytes of `digest`."""
        ...


def restore_adapter(adapter: Adapter, artifacts: ArtifactReader, cache_dir: Path) -> Adapter:
    """The adapter with `meta.location` at its files restored from the artifact store.

    The cache folder is `<cache_dir>/adapters/<manifest hex>`; an intact one is reused, a
    damaged one is restored again. Reads are verified by the store, the result by `meta.files`.
    """
    digest = adapter.artifact
    if not digest.startswith("sha256:"):
        raise ArtifactError(
            f"adapter {adapter.ref} names no artifact manifest (got {digest!r})",
            "re-run the training run that made it, so its files are stored as artifacts",
        )
    folder = cache_dir / ADAPTER_CACHE / digest.removeprefix("sha256:")
    restored = adapter.model_copy(update={"meta": {**adapter.meta, "location": str(folder)}})
    if folder.is_dir():
        try:
            adapter_folder(restored)
            return restored
        except ArtifactError:
            log.warning("restoring damaged adapter cache %s", folder)
            shutil.rmtree(folder, ignore_errors=True)
    with artifacts.open(digest) as stream:
        files: dict[str, str] = json.load(stream)["files"]
    if files != dict(adapter.meta.get("files") or {}) or any(
        Path(name).name != name for name in files
    ):
        raise ArtifactError(
            f"adapter {adapter.ref}: manifest {digest} does not list the record's files",
            "re-run the training run that made it",
        )

    def write(staging: Path) -> None:
        for name, file_digest in files.items():
            with artifacts.open(file_digest) as source, (staging / name).open("wb") as out:
                shutil.copyfileobj(source, out)

    publish_folder(folder, write)
    log.info("restored adapter %s from the artifact store into %s", adapter.ref, folder)
    adapter_folder(restored)
    return restored


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
