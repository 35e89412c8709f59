"""Atomic checkpoints: trainable weights, optimizer, scheduler, RNG states and data position.

A checkpoint is written into a temporary folder beside its final name, fsynced, then renamed
to `step-NNNNNN`; a crash or a full disk mid-write leaves at most a `.tmp-*` folder, which is
ignored and cleaned up, so the newest `step-*` folder is always complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from feilun.core.errors import ArtifactError
from feilun.training.lora import load_trainable_state, trainable_state

logger = logging.getLogger(__name__)
_STEP = re.compile(r"^step-(\d{6,})$")
_TMP_PREFIX = ".tmp-"
WEIGHTS, STATE, POSITION = "weights.safetensors", "state.pt", "position.json"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch, so a run is a function of its recipe."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The python, numpy and torch (CPU and CUDA) generator states."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": [version, list(state), gauss],
        "numpy": [kind, np.asarray(keys).tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(states: dict[str, Any]) -> None:
    """Put back what `capture_rng` took."""
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    folder: Path,
    step: int,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    position: dict[str, Any],
    keep: int,
) -> Path:
    """Write checkpoint `step` atomically under `folder`; keep only the newest `keep`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:06d}"
    staging = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=folder))
    try:
        save_file(trainable_state(model), str(staging / WEIGHTS))
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        torch.save({**state, "rng": capture_rng()}, staging / STATE)
        (staging / POSITION).write_text(json.dumps({**position, "step": step}), encoding="utf-8")
        for path in staging.iterdir():
            _fsync(path)
        os.rename(staging, final)
        _fsync(folder)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        previous = latest_checkpoint(folder)
        fix = "free disk space" if e.errno == errno.ENOSPC else "check the run folder"
        raise ArtifactError(
            f"checkpoint at step {step} could not be written to {folder}: {e.strerror or e}",
            f"{fix}, then `feilun train resume` continues from "
            + (f"{previous.name}, which is intact" if previous else "the start"),
        ) from e
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(folder, keep)
    logger.info("checkpoint %s", final)
    return final


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under `folder`, or None."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if _STEP.match(p.name) and (p / POSITION).is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def load_checkpoint(
    path: Path, model: Any, optimizer: torch.optim.Optimizer, scheduler: Any
) -> dict[str, Any]:
    """Restore weights, optimizer, scheduler and RNG from `path`; return the data position."""
    from safetensors.torch import load_file

    try:
        load_trainable_state(model, load_file(str(path / WEIGHTS)))
        state = torch.load(path / STATE, weights_only=True)
        position: dict[str, Any] = json.loads((path / POSITION).read_text(encoding="utf-8"))
    except (OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(
            f"checkpoint {path} cannot be read: {e}",
            f"remove {path} so resume starts from the checkpoint before it",
        ) from e
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    restore_rng(state["rng"])
    return position


def _prune(folder: Path, keep: int) -> None:
    done = sorted(
        (p for p in folder.iterdir() if _STEP.match(p.name)), key=lambda p: int(p.name[5:])
    )
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in folder.glob(f"{_TMP_PREFIX}*"):  # left by a crash mid-write
        shutil.rmtree(stale, ignore_errors=True)


def _fsync(path: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on folders
            os.fsync(fd)
    finally:
        os.close(fd)
