"""Turn rows in `flywheel_turns`: one per turn, its state JSON updated after every step.

`state` maps each step to its outputs (`done` once finished), plus `owner` (pid and host of
the process running it), so a turn whose process died reads as interrupted and resumes at
the first step not done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from feilun.core.errors import ConfigError, NotFound
from feilun.core.processes import is_running, this_process
from feilun.core.records import new_id, utc_now
from feilun.store.database import Database
from feilun.store.schema import flywheel_turns

TERMINAL = frozenset({"promoted", "rejected", "stopped"})


@dataclass
class Turn:
    """One row of `flywheel_turns`."""

    id: str
    name: str
    number: int
    status: str
    step: str
    config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def outputs(self, step: str) -> dict[str, Any]:
        """What `step` recorded so far (empty if it has not run)."""
        value = self.state.get(step)
        return value if isinstance(value, dict) else {}

    def is_done(self, step: str) -> bool:
        """Whether `step` finished."""
        return bool(self.outputs(step).get("done"))

    @property
    def is_alive(self) -> bool:
        """Whether the process that runs it is still running (on this host)."""
        owner = self.state.get("owner") or {}
        if self.finished_at is not None or not owner:
            return False
        return is_running(owner)
        return True


def create_turn(db: Database, name: str, config: dict[str, Any]) -> Turn:
    """The next turn of `name`; refuses while the previous one is unfinished."""
    previous = latest_turn(db, name)
    if previous is not None and previous.finished_at is None and previous.status == "running":
        doing = "is running" if previous.is_alive else "was interrupted"
        raise ConfigError(
            f"turn {name} #{previous.number} {doing} (step {previous.step})",
            f"resume it with `feilun flywheel resume --name {name}`",
        )
    turn = Turn(
        id=new_id("turn"),
        name=name,
        number=(previous.number if previous else 0) + 1,
        status="running",
        step="start",
        config=config,
        state={"owner": this_process()},
        started_at=utc_now(),
    )
    with db.session() as session:
        session.execute(
            sa.insert(flywheel_turns).values(
                id=turn.id,
                name=turn.name,
                number=turn.number,
                status=turn.status,
                step=turn.step,
                config=turn.config,
                state=turn.state,
                started_at=turn.started_at,
            )
        )
    return turn


def claim(db: Database, turn: Turn) -> Turn:
    """Take over an interrupted or failed turn: status running, owned by this process."""
    if turn.status == "running" and turn.is_alive:
        raise ConfigError(
            f"turn {turn.name} #{turn.number} is running in process {turn.state['owner']['pid']}",
            "wait for it, or stop that process first",
        )
    turn.state["owner"] = this_process()
    return save(db, turn, status="running", error=None, finished_at=None)


def save(db: Database, turn: Turn, **fields: Any) -> Turn:
    """Write the turn's state (and any other columns given) in one transaction."""
    for key, value in fields.items():
        setattr(turn, key, value)
    values = {"state": turn.state, "step": turn.step, **fields}
    with db.session() as session:
        session.execute(
            sa.update(flywheel_turns).where(flywheel_turns.c.id == turn.id).values(**values)
        )
    return turn


def list_turns(db: Database, name: str | None = None) -> list[Turn]:
    """Every turn (of one name), oldest first."""
    query = sa.select(flywheel_turns).order_by(flywheel_turns.c.started_at, flywheel_turns.c.number)
    if name is not None:
        query = query.where(flywheel_turns.c.name == name)
    with db.session(is_read_only=True) as session:
        rows = session.execute(query).mappings().all()
    return [Turn(**dict(row)) for row in rows]


def latest_turn(db: Database, name: str | None = None) -> Turn | None:
    """The newest turn (of one name), or None."""
    turns = list_turns(db, name)
    return turns[-1] if turns else None


def unfinished_turn(db: Database, name: str | None = None) -> Turn:
    """The newest turn (of one name) that did not finish: interrupted or failed."""
    turn = latest_turn(db, name)
    if turn is None or turn.status in TERMINAL:
        which = f"of {name!r} " if name else ""
        last = f"; the last one {turn.status}" if turn else ""
        raise NotFound(
            f"no unfinished flywheel turn {which}to resume{last}",
            "start one with `feilun flywheel turn --config FILE`",
        )
    return turn
