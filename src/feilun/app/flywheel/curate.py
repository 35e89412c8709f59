"""The curate step: feedback and traces into datasets (`feilun.app.curation`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feilun.app.flywheel.context import Stopped, TurnContext
from feilun.store.schema import feedback


def curate(ctx: TurnContext) -> dict[str, Any]:
    """Curate the datasets; stop the turn when nothing usable came out."""
    from feilun.app.curation import curate_feedback

    assert ctx.config.curate is not None
    result = curate_feedback(
        ctx.workspace, Path(ctx.config.curate.rules), ctx.config.curate.dataset
    )
    outputs = {
        "sft_dataset": result.sft_dataset,
        "preference_dataset": result.preference_dataset,
        "eval_dataset": result.eval_dataset,
        "counts": result.counts,
        "feedback_total": feedback_total(ctx),
    }
    if result.reason is not None:
        ctx.record("curate", **outputs, reason=result.reason)
        raise Stopped(f"curation produced nothing usable: {result.reason}")
    return outputs


def feedback_total(ctx: TurnContext) -> int:
    """Feedback rows recorded so far (the report's feedback volume)."""
    with ctx.workspace.database.session(is_read_only=True) as session:
        return int(session.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one())
