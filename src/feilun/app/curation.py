"""Curate feedback into dataset versions NAME, NAME-pref and NAME-eval.

Select (feedback) → skip what is curated already → keep eval questions out of training →
PII (data) → moderation (governance) → exact and near dedup (data) → save.

Each saved version is the previous version's rows plus the new ones, so `NAME@latest` is the
whole curated set. Feedback already curated into a previous version is skipped, and a new row
that repeats (exactly or nearly) a row of a previous version, of a `dedup.against` dataset or an
earlier new row is dropped. No training row asks an eval item's question. Every filter reports
rows in, out and removed by reason; the reports go into each dataset's manifest.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from feilun.app.workspace import Workspace
from feilun.core.errors import NotFound
from feilun.core.records import Dataset
from feilun.data.datasets import check_dataset_name, read_rows, resolve_dataset, save_dataset
from feilun.data.items import Item, Rejection
from feilun.data.operators.exact_dedup import ExactDedup
from feilun.data.operators.near_dedup import NearDedup
from feilun.data.operators.pii import Pii
from feilun.data.pipeline import OperatorReport, reason_category
from feilun.feedback.curation import (
    KINDS,
    Kind,
    build_candidates,
    get_field,
    load_interactions,
    row_fields,
    row_question,
    row_text,
    set_field,
)
from feilun.feedback.rules import CurationRules, load_rules
from feilun.governance.moderation import Moderator, load_policy
from feilun.governance.workspace import build_moderator

logger = logging.getLogger(__name__)

SUFFIXES: dict[Kind, str] = {"sft": "", "preference": "-pref", "eval": "-eval"}
COUNT_NAMES: dict[Kind, str] = {"sft": "sft", "preference": "preference", "eval": "eval_items"}
_BLOCKING = {"refuse": "refused", "block": "blocked"}

Row = dict[str, Any]


@dataclass(frozen=True)
class CurationResult:
    """The dataset versions a curation produced (refs `NAME@N`), its counts, or why none.

    Each ref is the dataset's latest version: new this run when it got new rows, else the one
    before (None when it was never made). With `reason` set, all three are None.
    """

    sft_dataset: str | None  # "NAME@N", SFT rows (chat `messages`)
    preference_dataset: str | None  # "NAME-pref@N", DPO rows (prompt/chosen/rejected)
    eval_dataset: str | None  # "NAME-eval@N", QA eval items (kept out of training)
    counts: dict[str, int]  # sft, preference, eval_items (new rows), removed_<reason>, ...
    reason: str | None  # why nothing usable was produced (None when something was)
    reports: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # kind → filters


@dataclass
class _Batch:
    """The new rows of one kind going through the filters, and what they removed."""

    kind: Kind
    rows: list[Row]
    reports: list[OperatorReport] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def apply(self, name: str, judge: Callable[[Row], Row | str]) -> None:
        """Keep each row `judge` returns (maybe rewritten); a string is why it is removed."""
        started = time.perf_counter()
        report = OperatorReport(name, "1", count_in=len(self.rows))
        kept = []
        for row in self.rows:
            verdict = judge(row)
            if isinstance(verdict, str):
                self._reject(report, row, name, verdict)
            else:
                kept.append(verdict)
        self.rows = kept
        report.count_out = len(kept)
        report.wall_s = round(time.perf_counter() - started, 4)
        self.reports.append(report)

    def _reject(self, report: OperatorReport, row: Row, name: str, reason: str) -> None:
        category = reason_category(reason)
        report.removed_by_reason[category] = report.removed_by_reason.get(category, 0) + 1
        self.rejected.append(Rejection(Item(row["id"], row_text(row), row["meta"]), name, reason))


def curate_feedback(
    workspace: Workspace,
    rules: Path,
    dataset: str,
    *,
    since: datetime | None = None,
    overrides: Sequence[str] = (),
) -> CurationResult:
    """Turn traces and their feedback into new versions of NAME, NAME-pref and NAME-eval."""
    names = {kind: dataset + suffix for kind, suffix in SUFFIXES.items()}
    for name in names.values():
        check_dataset_name(name)
    loaded = load_rules(rules, list(overrides))
    interactions, feedback_count, skipped = load_interactions(
        workspace.database, since, loaded.tenants
    )
    previous = {kind: _latest(workspace, name) for kind, name in names.items()}
    old_rows = {kind: _rows(workspace, previous[kind]) for kind in KINDS}
    against = [
        row
        for ref in loaded.dedup.against
        for row in _rows(workspace, resolve_dataset(workspace.catalog, ref))
    ]
    # Questions trained on before (curated, or in the datasets named) are never held out.
    seen = old_rows["sft"] + old_rows["preference"] + against
    candidates = build_candidates(interactions, loaded, {q for r in seen if (q := row_question(r))})
    skipped.update(candidates.skipped)
    moderator = _moderator(workspace, loaded)
    eval_questions = {
        q for row in old_rows["eval"] + candidates.rows["eval"] if (q := row_question(row))
    }
    batches: dict[Kind, _Batch] = {}
    for kind in KINDS:
        batch = _Batch(kind, candidates.rows[kind])
        batch.apply("already_curated", _is_new(old_rows[kind]))
        if kind != "eval":
            batch.apply("eval_holdout", partial(_check_not_eval, eval_questions=eval_questions))
        batch.apply("pii", _masker(loaded))
        batch.apply("moderation", partial(_moderate, moderator=moderator))
        _dedup(batch, old_rows[kind] + against, loaded)
        batches[kind] = batch

    counts = _counts(batches, interactions, feedback_count, skipped)
    reports: dict[str, list[dict[str, Any]]] = {
        kind: [r.to_json() for r in b.reports] for kind, b in batches.items()
    }
    if not any(b.rows for b in batches.values()):
        reason = _why_nothing(counts, since)
        logger.info("curation of %s produced nothing: %s", dataset, reason)
        return CurationResult(None, None, None, counts, reason, reports)
    refs = {}
    for kind, batch in batches.items():
        refs[kind] = _save(workspace, names[kind], batch, previous[kind], old_rows[kind], loaded)
    return CurationResult(refs["sft"], refs["preference"], refs["eval"], counts, None, reports)


def _latest(workspace: Workspace, name: str) -> Dataset | None:
    try:
        return resolve_dataset(workspace.catalog, name)
    except NotFound:
        return None


def _rows(workspace: Workspace, dataset: Dataset | None) -> list[Row]:
    return [] if dataset is None else read_rows(workspace.artifacts, dataset)


def _is_new(old_rows: list[Row]) -> Callable[[Row], Row | str]:
    """Skip rows made only of feedback the previous version has, and eval questions it asks."""
    curated = {f for row in old_rows for f in row.get("meta", {}).get("feedback_ids", [])}
    questions = {q for row in old_rows if "answers" in row and (q := row_question(row))}

    def check(row: Row) -> Row | str:
        if set(row["meta"]["feedback_ids"]) <= curated:
            return f"already_curated: feedback {', '.join(row['meta']['feedback_ids'])}"
        if "answers" in row and row_question(row) in questions:
            return "already_curated: the question is an eval item already"
        return row

    return check


def _check_not_eval(row: Row, eval_questions: set[str]) -> Row | str:
    question = row_question(row)
    if question is not None and question in eval_questions:
        return "eval_holdout: asks the question of an eval item"
    return row


def _masker(rules: CurationRules) -> Callable[[Row], Row | str]:
    pii = Pii(Pii.Params(default_action=rules.pii.action, mask_language=rules.pii.mask_language))

    def mask(row: Row) -> Row | str:
        out = copy.deepcopy(row)
        found: Counter[str] = Counter()
        for path, _ in row_fields(out):
            result = pii.process(Item(out["id"], get_field(out, path)))
            if isinstance(result, Rejection):
                return result.reason
            set_field(out, path, result.text)
            found.update(result.meta.get(pii.name, {}))
        if found:
            out["meta"] = {**out["meta"], "pii": dict(sorted(found.items()))}
        return out

    return mask


def _moderator(workspace: Workspace, rules: CurationRules) -> Moderator:
    path = rules.policy_path()
    policy = load_policy(path) if path is not None else None
    return build_moderator(workspace.path, policy, use_classifier=rules.moderation.use_classifier)


def _moderate(row: Row, moderator: Moderator) -> Row | str:
    """Drop a row whose prompt or answer the policy refuses or blocks; hide masked hits."""
    out = copy.deepcopy(row)
    for path, role in row_fields(out):
        if role == "other":
            continue  # a rejected answer may be unsafe: that is why it is rejected
        verdict = moderator.check(get_field(out, path))
        if verdict.decision in _BLOCKING:
            return f"moderation: {role} {_BLOCKING[verdict.decision]} ({verdict.category})"
        if verdict.is_masked:
            set_field(out, path, verdict.text)
    return out


def _dedup(batch: _Batch, existing: list[Row], rules: CurationRules) -> None:
    """Drop new rows repeating an existing row or an earlier new row (the first is kept)."""
    operators: list[Any] = []  # set operators: key() per item, select() over all keys
    if rules.dedup.use_exact:
        operators.append(ExactDedup())
    if rules.dedup.near_threshold is not None:
        operators.append(NearDedup(NearDedup.Params(threshold=rules.dedup.near_threshold)))
    old = [Item(f"existing:{row.get('id', n)}", row_text(row)) for n, row in enumerate(existing)]
    for operator in operators:
        new = {row["id"]: row for row in batch.rows}
        items = old + [Item(row_id, row_text(row)) for row_id, row in new.items()]
        removed = operator.select([(item.id, operator.key(item)) for item in items])
        batch.apply(operator.name, partial(_drop, removed=removed))


def _drop(row: Row, removed: dict[str, str]) -> Row | str:
    return removed.get(row["id"], row)


def _save(
    workspace: Workspace,
    name: str,
    batch: _Batch,
    previous: Dataset | None,
    old_rows: list[Row],
    rules: CurationRules,
) -> str | None:
    """Save previous rows + new rows as the next version; the latest ref when nothing is new."""
    if not batch.rows:
        return previous.ref if previous is not None else None
    lineage = [
        i for row in batch.rows for i in row["meta"]["trace_ids"] + row["meta"]["feedback_ids"]
    ]
    saved = save_dataset(
        workspace.catalog,
        workspace.artifacts,
        name,
        old_rows + batch.rows,
        inputs=([previous.id] if previous is not None else []) + lineage,
        recipe={"curation": rules.model_dump(mode="json"), "kind": batch.kind},
        reports=batch.reports,
        rejected=batch.rejected,
    )
    return saved.ref


def _counts(
    batches: dict[Kind, _Batch],
    interactions: Sequence[Any],
    feedback_count: int,
    skipped: Counter[str],
) -> dict[str, int]:
    counts = {"feedback": feedback_count, "traces": len(interactions)}
    counts |= {COUNT_NAMES[kind]: len(batch.rows) for kind, batch in batches.items()}
    removed: Counter[str] = Counter({f"skipped_{k}": v for k, v in skipped.items()})
    for batch in batches.values():
        for report in batch.reports:
            for category, n in report.removed_by_reason.items():
                removed[f"removed_{category}"] += n
    return counts | dict(sorted(removed.items()))


def _why_nothing(counts: dict[str, int], since: datetime | None) -> str:
    if counts["feedback"] == 0:
        when = f" since {since.isoformat()}" if since is not None else ""
        return f"no feedback{when}: rate answers with POST /v1/feedback or `feilun feedback add`"
    lost = {k: v for k, v in counts.items() if k.startswith(("removed_", "skipped_")) and v}
    listed = ", ".join(f"{k} {v}" for k, v in lost.items()) or "no rating selected any"
    return f"{counts['feedback']} feedback rows gave no new example ({listed})"
