"""The Ray Data engine: the same operators, run on Ray workers.

The recipe is cut into stages at each set operator. A stage is one `map_batches` on the
workers: its row operators, then the key of the set operator that closes it. The driver
then runs that operator's `select` over all keys and starts the next stage from what is kept.
Rows carry their input position, so order (and therefore the dataset hash) never depends on
how Ray scheduled them. Ray is imported only here, inside the engine.
"""

from __future__ import annotations

import logging
import math
import pickle
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from feilun.core.errors import BackendUnavailable, FeilunError
from feilun.data.items import Item, Rejection
from feilun.data.pipeline import (
    OperatorReport,
    PipelineResult,
    ProgressFn,
    apply_row,
    count_reason,
    key_of,
    new_reports,
    select_removed,
    unique_items,
)
from feilun.data.recipes import Recipe, Step

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

NUM_CPUS = 2
ROWS_PER_BLOCK = 2_000
KEPT = -1  # `stopped` of a row no operator removed


class RayEngine:
    """Runs row operators and set-operator keys on Ray workers, `select` on the driver."""

    name = "ray"

    def run(
        self, items: Iterable[Item], recipe: Recipe, progress: ProgressFn | None = None
    ) -> PipelineResult:
        """Same kept items, rejections and counts as the local engine, computed on Ray."""
        import pyarrow as pa

        _start_ray()
        reports = new_reports(recipe)
        rejected: list[list[Rejection]] = [[] for _ in recipe.steps]
        rows = [
            {"pos": pos, "id": item.id, "item": pickle.dumps(item)}
            for pos, item in enumerate(unique_items(items))
        ]
        table = pa.Table.from_pylist(rows, schema=_input_schema())
        for stage in _stages(recipe.steps):
            table = _run_stage(table, stage, reports, rejected, progress)
            if progress is not None:
                for index, step in stage:
                    progress(index, step.op, reports[index].count_in, reports[index].count_in)
        kept = [pickle.loads(blob) for blob in table.column("item").to_pylist()]
        return PipelineResult(
            kept=kept, rejected=[r for step in rejected for r in step], reports=reports
        )


def _start_ray() -> None:
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise BackendUnavailable(
            f"the ray engine needs Ray Data, which cannot be imported: {e}",
            "install it with `pip install 'feilun[ray]'`, or use --engine local",
        ) from e
    if not ray.is_initialized():
        logger.info("starting a local Ray instance with %d CPUs", NUM_CPUS)
        ray.init(num_cpus=NUM_CPUS, include_dashboard=False, log_to_driver=False)
    # Ray Data logs each execution at INFO on stderr, which would tear the caller's progress bars.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller draws its own, per operator
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True


def _stages(steps: tuple[Step, ...]) -> list[list[tuple[int, Step]]]:
    """Cut after each set operator: [row…, set], [row…, set], [row…]."""
    stages: list[list[tuple[int, Step]]] = [[]]
    for index, step in enumerate(steps):
        stages[-1].append((index, step))
        if step.is_set_operator:
            stages.append([])
    return [stage for stage in stages if stage]


def _run_stage(
    table: pa.Table,
    stage: list[tuple[int, Step]],
    reports: list[OperatorReport],
    rejected: list[list[Rejection]],
    progress: ProgressFn | None,
) -> pa.Table:
    """Run one stage on the workers; return the rows it keeps, in input order."""
    import pyarrow.compute as pc

    row_steps = [(i, s) for i, s in stage if not s.is_set_operator]
    closing = stage[-1] if stage[-1][1].is_set_operator else None
    first_index, first_step = stage[0]

    def advance(done: int) -> None:
        if progress is not None:
            progress(first_index, first_step.op, done, table.num_rows)

    out = _map_on_workers(table, _StageBatch(row_steps, closing), advance)
    stopped = out.column("stopped").to_pylist()
    seconds = out.column("seconds").to_pylist()
    count = out.num_rows
    for slot, (index, step) in enumerate(stage):
        report = reports[index]
        report.wall_s += sum(row[slot] for row in seconds)
        if step.is_set_operator:
            continue  # counted by _select
        removed = _rejections(out, stopped, index, step)
        for rejection in removed:
            rejected[index].append(rejection)
            count_reason(report, rejection.reason)
        report.count_in, report.count_out = count, count - len(removed)
        count = report.count_out
    kept = out.filter(pc.equal(out.column("stopped"), KEPT))
    if closing is not None:
        kept = _select(kept, *closing, reports[closing[0]], rejected[closing[0]])
    return kept.select(["pos", "id", "item"])


def _map_on_workers(
    table: pa.Table, stage: _StageBatch, advance: Callable[[int], None]
) -> pa.Table:
    """The stage's output rows, sorted back into input order; a worker's FeilunError raised."""
    import pyarrow as pa
    import ray.data

    done: list[pa.Table] = [_output_schema().empty_table()]
    if not table.num_rows:
        return done[0]
    # Enough blocks to keep every CPU busy, none so big that progress stalls.
    blocks = max(math.ceil(table.num_rows / ROWS_PER_BLOCK), min(table.num_rows, 2 * NUM_CPUS))
    size = math.ceil(table.num_rows / blocks)
    slices = [table.slice(start, size) for start in range(0, table.num_rows, size)]
    batches = (
        ray.data.from_arrow(slices)
        .map_batches(stage, batch_format="pyarrow", batch_size=None)
        .iter_batches(batch_format="pyarrow", batch_size=None)
    )
    for batch in batches:  # blocks stream back as workers finish them
        done.append(batch)
        advance(sum(t.num_rows for t in done))
    out = pa.concat_tables(done).sort_by("pos")
    _raise_worker_error(out)
    return out


def _raise_worker_error(out: pa.Table) -> None:
    import pyarrow.compute as pc

    errors = out.filter(pc.is_valid(out.column("error")))
    if errors.num_rows:
        error_type, message, fix = pickle.loads(errors.column("error")[0].as_py())
        raise error_type(message, fix)


def _rejections(out: pa.Table, stopped: list[int], index: int, step: Step) -> list[Rejection]:
    """The rows step `index` removed, in input order."""
    rows = [n for n, value in enumerate(stopped) if value == index]
    if not rows:
        return []
    reasons = out.column("reason").take(rows).to_pylist()
    blobs = out.column("item").take(rows).to_pylist()
    return [
        Rejection(item=pickle.loads(blob), operator=step.op, reason=reason)
        for reason, blob in zip(reasons, blobs, strict=True)
    ]


def _select(
    kept: pa.Table,
    index: int,
    step: Step,
    report: OperatorReport,
    rejected: list[Rejection],
) -> pa.Table:
    """Run a set operator's `select` on the driver over the keys the workers computed."""
    import pyarrow as pa
    import pyarrow.compute as pc

    started = time.perf_counter()
    ids = kept.column("id").to_pylist()
    keyed = [(i, pickle.loads(k)) for i, k in zip(ids, kept.column("key").to_pylist(), strict=True)]
    removed = select_removed(step, keyed)
    report.wall_s += time.perf_counter() - started
    is_removed = pa.array([i in removed for i in ids], type=pa.bool_())
    for item_id, blob in zip(ids, kept.column("item").to_pylist(), strict=True):
        reason = removed.get(item_id)
        if reason is not None:
            rejected.append(Rejection(item=pickle.loads(blob), operator=step.op, reason=reason))
            count_reason(report, reason)
    result = kept.filter(pc.invert(is_removed))
    report.count_in, report.count_out = kept.num_rows, result.num_rows
    return result


class _StageBatch:
    """What a worker does with one block: the stage's row operators, then the closing key."""

    def __init__(self, row_steps: list[tuple[int, Step]], closing: tuple[int, Step] | None):
        self.row_steps = row_steps
        self.closing = closing

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa

        schema = _output_schema()
        rows = []
        for pos, blob in zip(
            batch.column("pos").to_pylist(), batch.column("item").to_pylist(), strict=True
        ):
            try:
                rows.append(self._run_row(pos, pickle.loads(blob)))
            except FeilunError as e:
                # Ray would keep only its text; send it whole so the driver raises it as itself.
                error = pickle.dumps((type(e), e.message, e.fix))
                return pa.Table.from_pylist([{"pos": pos, "error": error}], schema=schema)
        return pa.Table.from_pylist(rows, schema=schema)

    def _run_row(self, pos: int, item: Item) -> dict[str, Any]:
        seconds = [0.0] * (len(self.row_steps) + (self.closing is not None))
        stopped, reason, key = KEPT, "", None
        for slot, (index, step) in enumerate(self.row_steps):
            started = time.perf_counter()
            result = apply_row(step, item)
            seconds[slot] = time.perf_counter() - started
            if isinstance(result, Rejection):
                stopped, reason, item = index, result.reason, result.item
                break
            item = result
        if stopped == KEPT and self.closing is not None:
            started = time.perf_counter()
            key = pickle.dumps(key_of(self.closing[1], item))
            seconds[-1] = time.perf_counter() - started
        return {
            "pos": pos,
            "id": item.id,
            "item": pickle.dumps(item),
            "stopped": stopped,
            "reason": reason,
            "key": key,
            "seconds": seconds,
            "error": None,
        }


def _input_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([("pos", pa.int64()), ("id", pa.string()), ("item", pa.binary())])


def _output_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("pos", pa.int64()),
            ("id", pa.string()),
            ("item", pa.binary()),
            ("stopped", pa.int64()),
            ("reason", pa.string()),
            ("key", pa.binary()),
            ("seconds", pa.list_(pa.float64())),
            ("error", pa.binary()),  # a FeilunError raised on the worker, pickled
        ]
    )


ENGINE = RayEngine()
