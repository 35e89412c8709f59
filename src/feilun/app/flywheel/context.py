"""What every step is handed: the workspace, the turn's config and its row (state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feilun.app.flywheel.config import TurnConfig
from feilun.app.flywheel.turns import Turn, save
from feilun.app.workspace import Workspace

OnStep = Callable[[str], None]


class Stopped(Exception):
    """A step found nothing to work with: the turn ends `stopped`, with the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TurnContext:
    """One turn being driven."""

    workspace: Workspace
    config: TurnConfig
    turn: Turn
    on_step: OnStep

    def outputs(self, step: str) -> dict[str, Any]:
        """What `step` recorded so far."""
        return self.turn.outputs(step)

    def record(self, step: str, **outputs: Any) -> None:
        """Add outputs of `step` to the turn's state, durably (a resume starts from them)."""
        self.turn.state[step] = {**self.turn.outputs(step), **outputs}
        save(self.workspace.database, self.turn)

    @property
    def folder(self) -> Path:
        """Files of this turn (e.g. the curated eval set as a suite file)."""
        path = self.workspace.path / "flywheel" / self.turn.name / f"turn-{self.turn.number}"
        path.mkdir(parents=True, exist_ok=True)
        return path
