"""Read a dataset version's rows: the catalog record names a JSONL artifact, verified on read.

The data stage writes datasets; training only reads them, through the catalog and the
artifact store (stage packages never import each other).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from feilun.core.errors import ArtifactError, ConfigError, NotFound
from feilun.core.protocols import Catalog
from feilun.core.records import Dataset
from feilun.store.artifacts import ObjectStore

_REF = re.compile(r"^(?P<name>[^@\s]+?)(?:@(?P<version>\d+|latest))?$")


def resolve_dataset(catalog: Catalog, ref: str) -> Dataset:
    """The dataset `name` (latest), `name@3` or `name@latest`; NotFound lists what exists."""
    match = _REF.match(ref.strip())
    if match is None:
        raise ConfigError(
            f"dataset reference {ref!r} is malformed", "write `name`, `name@2` or `name@latest`"
        )
    name, version = match.group("name"), match.group("version")
    versions = [r for r in catalog.find(Dataset.kind, name) if isinstance(r, Dataset)]
    if not versions:
        known = sorted({r.name for r in catalog.find(Dataset.kind)})
        raise NotFound(
            f"no dataset named {name!r}; datasets: {', '.join(known) or 'none'}",
            "list them with `feilun data list`; set `dataset:` in the recipe to one of them",
        )
    if version in (None, "latest"):
        return versions[0]
    for dataset in versions:
        if dataset.version == int(version):
            return dataset
    listed = ", ".join(str(d.version) for d in sorted(versions, key=lambda d: d.version))
    raise NotFound(
        f"dataset {name!r} has no version {version}; versions: {listed}",
        f"use one of those, or {name}@latest",
    )


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
