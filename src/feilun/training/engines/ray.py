"""The Ray Train engine: N workers of a `TorchTrainer` (gloo on CPU, NCCL on GPUs).

Ray Train starts the workers and sets up their torch process group (RANK/WORLD_SIZE too); each
worker then runs the `feilun` console command in-process, exactly what torchrun runs, so the
recipes, checkpoints and report card are the same. Without RAY_ADDRESS a local Ray instance
with `nproc` CPUs is started and stopped; with it, the run joins that cluster (the workspace
must then be on storage every node sees). Ray is imported only here.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import torch

from feilun.core.errors import BackendUnavailable, ConfigError

logger = logging.getLogger(__name__)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `feilun <argv>` in `nproc` Ray Train workers; 0 when every worker finished."""
    if nproc < 1:
        raise ConfigError(f"--nproc={nproc} must be at least 1", "pass --nproc 2 or more")
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig, TrainingFailedError
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as e:
        raise BackendUnavailable(
            f"--engine ray needs Ray Train, which cannot be imported: {e}",
            "install it with `pip install 'ray[train]'`, or use --engine torchrun",
        ) from e
    is_local = not ray.is_initialized() and not os.environ.get("RAY_ADDRESS")
    if is_local:
        logger.info("starting a local Ray instance with %d CPUs", nproc)
        ray.init(num_cpus=nproc, include_dashboard=False, log_to_driver=False)
    elif not ray.is_initialized():
        ray.init(log_to_driver=False)  # the cluster RAY_ADDRESS names
    use_gpu = torch.cuda.is_available()
    try:
        with tempfile.TemporaryDirectory(prefix="feilun-ray-") as scratch:
            trainer = TorchTrainer(
                _run_feilun,
                train_loop_config={"argv": list(argv)},
                scaling_config=ScalingConfig(num_workers=nproc, use_gpu=use_gpu),
                torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
                run_config=RunConfig(name="feilun-train", storage_path=scratch),
            )
            trainer.fit()
    except TrainingFailedError as e:
        logger.error("Ray Train workers failed: %s", e)
        return 1
    finally:
        if is_local:
            ray.shutdown()
    return 0


def _run_feilun(config: dict[str, Any]) -> None:
    """One Ray Train worker: the `feilun` console command with `config["argv"]`, in-process."""
    from importlib.metadata import entry_points

    argv = [str(a) for a in config["argv"]]
    (command,) = entry_points(group="console_scripts", name="feilun")
    sys.argv = ["feilun", *argv]
    try:
        command.load()()
    except SystemExit as e:  # the command's own exit; anything but 0 fails the worker
        if e.code:
            raise RuntimeError(f"`feilun {' '.join(argv)}` exited with {e.code}") from e
