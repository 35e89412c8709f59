"""Moving the serving alias: canary, promotion and rollback.

`promote` and `rollback_alias` are the only places an alias moves (the audit trail hooks in
there). The registry moves an alias atomically and a running server follows it within a
second; the previous target is kept in the turn's state, which is what rollback restores.
"""

from __future__ import annotations

import time
from typing import Any

from feilun.app.audit import record
from feilun.app.flywheel.context import Stopped, TurnContext
from feilun.app.flywheel.turns import list_turns, save
from feilun.app.workspace import Workspace
from feilun.core.errors import NotFound
from feilun.core.records import utc_now


def promote(workspace: Workspace, alias: str, target: str) -> None:
    """Point `alias` at `target` (dropping any canary), and audit the move."""
    _move(workspace, "model.promoted", alias, target)


def rollback_alias(workspace: Workspace, alias: str, previous: str) -> None:
    """Point `alias` back at `previous`, and audit the move."""
    _move(workspace, "model.rolled_back", alias, previous)


def _move(workspace: Workspace, action: str, alias: str, target: str) -> None:
    current = workspace.models.alias(alias)
    workspace.models.set_alias(alias, target)
    details = {"from": current.target if current else None, "to": target}
    record(workspace, action, alias, details, actor="flywheel")


def promote_step(ctx: TurnContext) -> dict[str, Any]:
    """Promote the candidate; what the alias pointed at before is recorded first."""
    alias = ctx.config.alias
    if "previous" not in ctx.outputs("promote"):
        ctx.record("promote", alias=alias, previous=ctx.outputs("evaluate")["incumbent"])
    target = ctx.workspace.models.resolve(ctx.outputs("train")["candidate"]).ref
    promote(ctx.workspace, alias, target)
    return {"target": target, "promoted_at": utc_now().isoformat()}


def canary_step(ctx: TurnContext) -> dict[str, Any]:
    """Send the configured share of the alias's requests to the candidate for `hold_s`."""
    assert ctx.config.canary is not None
    share, hold_s = ctx.config.canary.share, ctx.config.canary.hold_s
    models, alias = ctx.workspace.models, ctx.config.alias
    candidate = ctx.outputs("train")["candidate"]
    if "started_at" not in ctx.outputs("canary"):
        if models.alias(alias) is None:  # serve the incumbent under the alias first
            models.set_alias(alias, ctx.outputs("evaluate")["incumbent"])
        models.set_canary(alias, candidate, share)
        ctx.record("canary", started_at=time.time(), share=share, target=candidate)
    left = hold_s - (time.time() - float(ctx.outputs("canary")["started_at"]))
    if left > 0:
        ctx.on_step(f"canary: {share:.0%} of {alias} to {candidate} for {left:.0f} s")
        time.sleep(left)
    current = models.alias(alias)
    canary = current.meta.get("canary") if current else None
    if not canary or canary["target"] != models.resolve(candidate).ref:
        raise Stopped(f"the canary on {alias} was rolled back; {candidate} not promoted")
    return {"held_s": hold_s}


def rollback(workspace: Workspace, alias: str) -> dict[str, Any]:
    """Undo the newest promotion of `alias` (or stop its canary): what moved, from and to."""
    models = workspace.models
    current = models.alias(alias)
    if current is None:
        raise NotFound(f"no alias {alias!r}", "see `feilun models list`")
    canary = current.meta.get("canary")
    if canary:
        models.set_canary(alias, current.target, 0.0)
        return {"alias": alias, "from": canary["target"], "to": current.target, "turn": None}
    for turn in reversed(list_turns(workspace.database)):
        done = turn.outputs("promote")
        if (
            done.get("done")
            and done.get("alias") == alias
            and done.get("target") == current.target
            and not done.get("rolled_back_at")
        ):
            rollback_alias(workspace, alias, done["previous"])
            turn.state["promote"] = {**done, "rolled_back_at": utc_now().isoformat()}
            save(workspace.database, turn)
            return {
                "alias": alias,
                "from": current.target,
                "to": done["previous"],
                "turn": f"{turn.name} #{turn.number}",
            }
    raise NotFound(
        f"no flywheel turn promoted {alias} -> {current.target}, so there is nothing to roll back",
        f"point it by hand: `feilun models alias {alias} REF`",
    )
