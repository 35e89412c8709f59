"""EvalReport artifacts: the whole run as one JSON artifact, indexed by a catalog record.

The artifact pins everything needed to reproduce and audit the scores: the model reference
and chat template, each task's file digest, prompt templates, few-shot item ids, decoding
parameters, seed, raw generations or option log-likelihoods, per-item scores, aggregate
scores with 95% bootstrap intervals, skipped rows and wall time. The record's `scores` hold
`task/metric` values for listing and gating without reading the artifact.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from feilun import __version__
from feilun.core.errors import ArtifactError, NotFound
from feilun.core.records import EvalReport, utc_now
from feilun.evaluation.results import TaskResult
from feilun.store.catalog import resolve_version

if TYPE_CHECKING:
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

KIND = EvalReport.kind
FORMAT = 1


def build_payload(
    *,
    model: str,
    suite: str,
    seed: int,
    tasks: Sequence[TaskResult],
    wall_time_s: float,
    chat_template: str = "",
    model_card: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The artifact body of one run."""
    return {
        "format": FORMAT,
        "model": model,
        "suite": suite,
        "seed": seed,
        "chat_template": chat_template,
        "model_card": model_card or {},
        "created_at": utc_now().isoformat(),
        "wall_time_s": wall_time_s,
        "environment": {
            "feilun": __version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "tasks": [task.to_json() for task in tasks],
    }


def save_report(
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    payload: dict[str, Any],
    *,
    inputs: Sequence[str] = (),
) -> EvalReport:
    """Store the payload as an artifact and its record as the next version of the suite's name."""
    body = json.dumps(payload, ensure_ascii=False, sort_keys=True, allow_nan=False).encode()
    digest = artifacts.put_bytes(body)
    scores = {
        f"{task['name']}/{metric}": value["value"]
        for task in payload["tasks"]
        for metric, value in task["metrics"].items()
    }
    name = payload["suite"]
    record = EvalReport(
        name=name,
        version=catalog.next_version(KIND, name),
        model=payload["model"],
        suite=name,
        scores=scores,
        artifact=digest,
        inputs=list(dict.fromkeys(inputs)),
        meta={
            "wall_time_s": payload["wall_time_s"],
            "seed": payload["seed"],
            "tasks": {
                t["name"]: {"kind": t["kind"], "n": t["n"], "errors": t["errors"]}
                for t in payload["tasks"]
            },
        },
    )
    return cast(EvalReport, catalog.save(record, if_taken="next"))


def find_report(catalog: SqlCatalog, ref: str) -> EvalReport:
    """A report by id (`evr_…`) or by `suite`, `suite@3`, `suite@latest`."""
    if ref.startswith(EvalReport.id_prefix + "_"):
        for record in catalog.find(KIND):
            if record.id == ref:
                return cast(EvalReport, record)
        raise NotFound(f"no eval report with id {ref!r}", "list them with `feilun eval list`")
    hint = "list them with `feilun eval list`, or make one with `feilun eval run`"
    return cast(EvalReport, resolve_version(catalog, KIND, ref, noun="eval report", hint=hint))


def list_reports(catalog: SqlCatalog) -> list[EvalReport]:
    """Every report, newest first."""
    records = [cast(EvalReport, r) for r in catalog.find(KIND)]
    return sorted(records, key=lambda r: r.created_at, reverse=True)


def load_payload(artifacts: ArtifactStore, report: EvalReport) -> dict[str, Any]:
    """The report's artifact body, verified against its digest."""
    try:
        payload: dict[str, Any] = json.loads(artifacts.read_bytes(report.artifact))
    except (ValueError, OSError) as e:
        raise ArtifactError(
            f"eval report {report.id}: artifact {report.artifact} is unreadable: {e}",
            "re-run the evaluation",
        ) from e
    return payload


def summarize(report: EvalReport, payload: dict[str, Any]) -> dict[str, Any]:
    """What `feilun eval show --json` prints: the record and each task's scores, no items."""
    return {
        "id": report.id,
        "ref": report.ref,
        "model": report.model,
        "suite": report.suite,
        "created_at": report.created_at.isoformat(),
        "wall_time_s": payload["wall_time_s"],
        "seed": payload["seed"],
        "artifact": report.artifact,
        "scores": report.scores,
        "tasks": [
            {k: v for k, v in task.items() if k not in ("items", "prompt")}
            for task in payload["tasks"]
        ],
    }


def metric_rows(task: dict[str, Any]) -> list[list[str]]:
    """`[metric, score, 95% CI]` for each metric of one task, as every report view shows them."""
    return [
        [metric, f"{v['value']:.4f}", f"{v['low']:.3f}–{v['high']:.3f}"]
        for metric, v in task["metrics"].items()
    ]
