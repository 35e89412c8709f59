"""The flywheel turn: curate → train → evaluate → gate → (canary) → promote → report.

`run_turn` starts one from a config (recipes/flywheel/<name>.yaml), `resume_turn` continues
one that crashed or failed at its first unfinished step, `rollback` undoes the newest
promotion of an alias, `write_report` writes the report across a flywheel's turns.
"""

from feilun.app.flywheel.promotion import rollback
from feilun.app.flywheel.report import write_report
from feilun.app.flywheel.run import TurnResult, resume_turn, run_turn

__all__ = ["TurnResult", "resume_turn", "rollback", "run_turn", "write_report"]
