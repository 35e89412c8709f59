"""Immutable, versioned datasets: rows as one canonical JSONL artifact, plus a catalog record.

`name@1`, `name@2`, … never change once saved; saving again makes the next version. The
record's content hash is the digest of the canonical JSONL (sorted keys, no spaces), so the
same rows give the same hash whichever engine made them and however often they are saved.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import tempfile
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from feilun.core.errors import ArtifactError, ConfigError
from feilun.core.records import Dataset, hash_content
from feilun.data.items import Item, Rejection
from feilun.data.recipes import Recipe
from feilun.store.catalog import resolve_version

if TYPE_CHECKING:
    from feilun.core.records import Document
    from feilun.data.pipeline import OperatorReport, PipelineResult
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

logger = logging.getLogger(__name__)

KIND = "dataset"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ExportFormat = Literal["jsonl", "parquet"]


def item_row(item: Item) -> dict[str, Any]:
    """The dataset row of a kept item."""
    return {"id": item.id, "text": item.text, "meta": item.meta}


def rejection_row(rejection: Rejection) -> dict[str, Any]:
    """The row of a rejected item: the item, which operator removed it, and why."""
    return {
        "item": item_row(rejection.item),
        "operator": rejection.operator,
        "reason": rejection.reason,
    }


def save_cleaned(
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    name: str,
    documents: Sequence[Document],
    recipe: Recipe,
    result: PipelineResult,
) -> Dataset:
    """Save a cleaning run over `documents` (kept rows, rejected set, reports) as dataset `name`."""
    return save_dataset(
        catalog,
        artifacts,
        name,
        (item_row(item) for item in result.kept),
        inputs=[d.id for d in documents],
        recipe=recipe,
        reports=result.reports,
        rejected=result.rejected,
    )


def save_dataset(
    catalog: SqlCatalog,
    artifacts: ArtifactStore,
    name: str,
    rows: Iterable[Mapping[str, Any]],
    *,
    inputs: Sequence[str] = (),
    recipe: Recipe | Mapping[str, Any] | None = None,
    reports: Sequence[OperatorReport] = (),
    rejected: Sequence[Rejection] = (),
) -> Dataset:
    """Store `rows` (and the rejected set) as the next version of dataset `name`.

    Versions are never overwritten: when another writer saves the version this one picked
    first, this one is stored as the version after (the returned record says which).
    """
    check_dataset_name(name)
    digest, count = _put_jsonl(artifacts, rows, "row")
    rejected_digest, rejected_count = _put_jsonl(
        artifacts, (rejection_row(r) for r in rejected), "rejected item"
    )
    resolved = recipe.resolved() if isinstance(recipe, Recipe) else dict(recipe or {})
    removed: dict[str, int] = {}
    for report in reports:
        for category, n in report.removed_by_reason.items():
            removed[category] = removed.get(category, 0) + n
    record = Dataset(
        name=name,
        version=catalog.next_version(KIND, name),
        inputs=list(dict.fromkeys(inputs)),
        artifact=digest,
        count=count,
        recipe=resolved,
        content_hash=digest,
        meta={
            "operators": [r.to_json() for r in reports],
            "removed_by_reason": dict(sorted(removed.items())),
            "rejected_artifact": rejected_digest,
            "rejected_count": rejected_count,
        },
    )
    # A writer that saved this version meanwhile keeps it; this one takes the next free one.
    record = cast(Dataset, catalog.save(record, if_taken="next"))
    logger.info("saved dataset %s: %d rows, %d rejected", record.ref, count, rejected_count)
    return record


def check_dataset_name(name: str) -> None:
    """Refuse names that would be ambiguous in a `name@version` reference."""
    if not _NAME.match(name):
        raise ConfigError(
            f"dataset name {name!r} is not allowed",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def list_datasets(catalog: SqlCatalog, name: str | None = None) -> list[Dataset]:
    """Every version of every dataset (or of one name): by name, newest version first."""
    found = [r for r in catalog.find(KIND, name) if isinstance(r, Dataset)]
    return sorted(found, key=lambda d: (d.name, -d.version))


def resolve_dataset(catalog: SqlCatalog, ref: str) -> Dataset:
    """The dataset `name` (latest), `name@3` or `name@latest`."""
    hint = "list them with `feilun data list`, or make one with `feilun data clean`"
    return cast(Dataset, resolve_version(catalog, KIND, ref, noun="dataset", hint=hint))


def iter_rows(artifacts: ArtifactStore, digest: str) -> Generator[dict[str, Any], None, None]:
    """The rows of a JSONL artifact, verified against its digest before the first one."""
    with artifacts.open(digest) as stream:
        for number, line in enumerate(stream, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ArtifactError(
                    f"artifact {digest} line {number} is not JSON: {e.msg}",
                    "re-create the dataset (run `feilun data clean` again)",
                ) from e


def read_rows(
    artifacts: ArtifactStore, dataset: Dataset, limit: int | None = None
) -> list[dict[str, Any]]:
    """The dataset's rows in order (the first `limit` of them, if given)."""
    return _take(iter_rows(artifacts, dataset.artifact), limit)


def read_rejected(
    artifacts: ArtifactStore, dataset: Dataset, limit: int | None = None
) -> list[Rejection]:
    """The items the recipe removed, with the operator and reason, in pipeline order."""
    digest = dataset.meta.get("rejected_artifact")
    if not digest:
        return []
    rows = _take(iter_rows(artifacts, digest), limit)
    return [
        Rejection(
            item=Item(id=r["item"]["id"], text=r["item"]["text"], meta=r["item"]["meta"]),
            operator=r["operator"],
            reason=r["reason"],
        )
        for r in rows
    ]


@dataclass
class DatasetDiff:
    """What changed from dataset `a` to dataset `b`, by row id."""

    a: str
    b: str
    count_a: int
    count_b: int
    is_same_content: bool
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0


def diff_datasets(artifacts: ArtifactStore, a: Dataset, b: Dataset) -> DatasetDiff:
    """Rows added, removed and changed (same id, other content) from `a` to `b`."""
    old = _by_id(iter_rows(artifacts, a.artifact))
    new = _by_id(iter_rows(artifacts, b.artifact))
    diff = DatasetDiff(
        a=a.ref, b=b.ref, count_a=a.count, count_b=b.count, is_same_content=a.artifact == b.artifact
    )
    diff.added = [i for i in new if i not in old]
    diff.removed = [i for i in old if i not in new]
    for row_id, content in new.items():
        if row_id in old:
            if old[row_id] == content:
                diff.unchanged += 1
            else:
                diff.changed.append(row_id)
    return diff


def export_dataset(
    artifacts: ArtifactStore, dataset: Dataset, path: Path, format: ExportFormat = "jsonl"
) -> Path:
    """Write the dataset's rows to `path` as JSONL or Parquet (atomically)."""
    path = Path(path)
    if format not in ("jsonl", "parquet"):
        raise ConfigError(f"export format {format!r} is not supported", "use jsonl or parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if format == "jsonl":
            tmp.write_bytes(artifacts.read_bytes(dataset.artifact))
        else:
            _write_parquet(read_rows(artifacts, dataset), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("exported %s to %s (%s)", dataset.ref, path, format)
    return path


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        # Values of one key differ in type across rows: nested values go as JSON text instead.
        logger.warning("nested values have mixed types (%s); writing them as JSON text", e)
        table = pa.Table.from_pylist(
            [
                {k: _canonical(v) if isinstance(v, dict | list) else v for k, v in row.items()}
                for row in rows
            ]
        )
    pq.write_table(table, path)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _put_jsonl(
    artifacts: ArtifactStore, rows: Iterable[Mapping[str, Any]], what: str
) -> tuple[str, int]:
    """Store rows as canonical JSONL (streamed through a temporary file); digest and count."""
    count = 0
    with tempfile.TemporaryDirectory(prefix="feilun-dataset-") as folder:
        body = Path(folder) / "rows.jsonl"
        with body.open("w", encoding="utf-8", newline="\n") as out:
            for row in rows:
                try:
                    line = json.dumps(
                        row,
                        sort_keys=True,
                        separators=(",", ":"),
                        ensure_ascii=False,
                        allow_nan=False,
                    )
                except (TypeError, ValueError) as e:
                    raise ConfigError(
                        f"{what} {count + 1} (id {row.get('id', '?')!r}) cannot be stored as "
                        f"JSON: {e}",
                        "keep text and meta values JSON: str, number, bool, null, list, dict",
                    ) from e
                out.write(line + "\n")
                count += 1
        return artifacts.put_file(body), count


def _by_id(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Row id (or, for rows without one, the row's hash) → canonical content."""
    out: dict[str, str] = {}
    for row in rows:
        row_id = row.get("id")
        key = row_id if isinstance(row_id, str) else hash_content(row)
        out[key] = _canonical(row)
    return out


def _take(rows: Generator[dict[str, Any], None, None], limit: int | None) -> list[dict[str, Any]]:
    """The first `limit` rows (all if None), closing the artifact file either way."""
    try:
        return list(rows) if limit is None else list(itertools.islice(rows, limit))
    finally:
        rows.close()
