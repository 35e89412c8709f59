"""The torchrun engine: N local processes started by `torch.distributed.run` (gloo or NCCL).

Every process runs the `feilun` command itself and joins the process group torchrun describes
through RANK/WORLD_SIZE (see `training.distributed.join_world`).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence

from feilun.core.errors import ConfigError


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `feilun <argv>` in `nproc` processes under torchrun; their exit code."""
    if nproc < 1:
        raise ConfigError(f"--nproc={nproc} must be at least 1", "pass --nproc 2 or more")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        "--master-addr=127.0.0.1",
        f"--master-port={_free_port()}",
        "--no-python",
        sys.executable,
        "-c",
        "from feilun.cli.main import run; run()",
        *argv,
    ]
    # the first process reports through files (status, manifest); stdout would repeat it
    return subprocess.run(command, stdout=subprocess.DEVNULL, check=False).returncode


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
