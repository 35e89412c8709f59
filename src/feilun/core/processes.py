"""Who owns a resumable job: this process's (host, pid) record, and whether an owner still runs."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any


def this_process() -> dict[str, Any]:
    """The owner record of the running process: its pid and host."""
    return {"pid": os.getpid(), "host": socket.gethostname()}


def is_running(owner: Mapping[str, Any]) -> bool:
    """Whether the process an owner record names still runs (another host's: assumed so)."""
    if owner.get("host") != socket.gethostname():
        return True  # another machine's process: cannot tell, trust the status
    pid = int(owner.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True
