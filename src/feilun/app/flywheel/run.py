"""The turn's state machine: curate → train → evaluate → gate → canary → promote → report.

Each finished step's outputs are written to the turn's row before the next step starts, so
`resume_turn` continues at the first step not done. A step that finds nothing to work with
stops the turn (`stopped`); an error fails it (`failed`, the alias untouched unless the
promotion itself had happened); a blocked gate rejects it. The report is written in every
case but a failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feilun.app.flywheel.config import load_config, parse_config
from feilun.app.flywheel.context import OnStep, Stopped, TurnContext
from feilun.app.flywheel.curate import curate
from feilun.app.flywheel.evaluate import evaluate
from feilun.app.flywheel.gating import gate
from feilun.app.flywheel.promotion import canary_step, promote_step
from feilun.app.flywheel.report import write_report
from feilun.app.flywheel.train import train
from feilun.app.flywheel.turns import Turn, claim, create_turn, save, unfinished_turn
from feilun.app.workspace import Workspace
from feilun.core.errors import FeilunError
from feilun.core.records import utc_now

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TurnResult:
    """How a turn ended."""

    id: str
    name: str
    number: int
    status: str  # promoted | rejected | stopped | failed
    candidate: str | None
    incumbent: str | None
    gate: dict[str, Any] | None  # verdict, passed, metrics, checks, reasons
    report_path: str | None
    reason: str | None = None  # why it stopped or failed


def _report(ctx: TurnContext) -> dict[str, Any]:
    path = write_report(ctx.workspace, ctx.turn.name, ctx.config.report_dir(ctx.workspace.path))
    return {"path": str(path)}


def _passed(ctx: TurnContext) -> bool:
    return bool(ctx.outputs("gate").get("passed"))


Step = tuple[str, Callable[[TurnContext], dict[str, Any]], Callable[[TurnContext], bool]]
STEPS: tuple[Step, ...] = (
    ("curate", curate, lambda ctx: ctx.config.curate is not None),
    ("train", train, lambda ctx: True),
    ("evaluate", evaluate, lambda ctx: True),
    ("gate", gate, lambda ctx: True),
    ("canary", canary_step, lambda ctx: ctx.config.canary is not None and _passed(ctx)),
    ("promote", promote_step, _passed),
)


def _quiet(_: str) -> None:
    return None


def run_turn(workspace: Workspace, config: Path, *, on_step: OnStep = _quiet) -> TurnResult:
    """Run a new turn of the flywheel `config` describes."""
    cfg = load_config(config)
    turn = create_turn(workspace.database, cfg.name, cfg.model_dump(mode="json"))
    return _drive(TurnContext(workspace, cfg, turn, on_step))


def resume_turn(
    workspace: Workspace, name: str | None = None, *, on_step: OnStep = _quiet
) -> TurnResult:
    """Continue the newest interrupted or failed turn (of `name`) at its first unfinished step."""
    turn = claim(workspace.database, unfinished_turn(workspace.database, name))
    cfg = parse_config(turn.config, f"turn {turn.name} #{turn.number}'s config")
    return _drive(TurnContext(workspace, cfg, turn, on_step))


def _drive(ctx: TurnContext) -> TurnResult:
    db, turn = ctx.workspace.database, ctx.turn
    step = turn.step
    try:
        stopped = turn.state.get("stopped")
        for step, run, applies in STEPS:
            if stopped or turn.is_done(step) or not applies(ctx):
                continue
            ctx.on_step(step)
            save(db, turn, step=step)
            try:
                ctx.record(step, **run(ctx), done=True)
            except Stopped as e:
                stopped = turn.state["stopped"] = e.reason
        status = "stopped" if stopped else "promoted" if turn.is_done("promote") else "rejected"
        step = "report"
        ctx.on_step(step)
        save(db, turn, step=step, status=status, error=stopped)
        ctx.record(step, **_report(ctx), done=True)
        save(db, turn, finished_at=utc_now())
    except BaseException as e:
        message = str(e) if isinstance(e, FeilunError) else f"{type(e).__name__}: {e}"
        save(db, turn, status="failed", error=f"{step}: {message}", finished_at=utc_now())
        if not isinstance(e, FeilunError):
            raise
        logger.warning("turn %s #%d failed at %s: %s", turn.name, turn.number, step, message)
    return result_of(turn)


def result_of(turn: Turn) -> TurnResult:
    """The TurnResult a turn row describes."""
    gate = turn.outputs("gate")
    return TurnResult(
        id=turn.id,
        name=turn.name,
        number=turn.number,
        status=turn.status,
        candidate=turn.outputs("train").get("candidate"),
        incumbent=turn.outputs("evaluate").get("incumbent"),
        gate={k: gate[k] for k in ("verdict", "passed", "metrics", "checks", "reasons")}
        if gate.get("done")
        else None,
        report_path=turn.outputs("report").get("path"),
        reason=turn.error,
    )
