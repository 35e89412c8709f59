"""Read a dataset version's rows: the catalog record names a JSONL artifact, verified on read.

The data stage writes datasets; training only reads them, through the catalog and the
artifact store (stage packages never import each other).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, cast

from feilun.core.errors import ArtifactError
from feilun.core.protocols import Catalog
from feilun.core.records import Dataset
from feilun.store.artifacts import ObjectStore
from feilun.store.catalog import resolve_version


def resolve_dataset(catalog: Catalog, ref: str) -> Dataset:
    """The dataset `name` (latest), `name@3` or `name@latest`; NotFound lists what exists."""
    hint = "list them with `feilun data list`; set `dataset:` in the recipe to one of them"
    return cast(Dataset, resolve_version(catalog, Dataset.kind, ref, noun="dataset", hint=hint))


def iter_rows(artifacts: ObjectStore, dataset: Dataset) -> Iterator[Any]:
    """The dataset's rows in order, as parsed JSON (the artifact's hash is checked first)."""
    with artifacts.open(dataset.artifact) as stream:
        for number, line in enumerate(stream, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ArtifactError(
                    f"dataset {dataset.ref} line {number} is not JSON: {e.msg}",
                    "re-create the dataset with the `feilun data` command that made it",
                ) from e
