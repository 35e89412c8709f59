"""Register what a run made: an Adapter on its base model (or, for `full`, a new base model).

Every output file goes into the artifact store, and a JSON manifest of their digests is the
Adapter's artifact; the record carries its lineage (dataset and base model ids), recipe hash,
metrics and the chat template it was trained with, so serving renders prompts the same way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from feilun.core.records import Adapter, BaseModel, Dataset
from feilun.models.registry import ModelRegistry
from feilun.store.artifacts import ArtifactStore
from feilun.training.recipe import Recipe

logger = logging.getLogger(__name__)


def store_folder(artifacts: ArtifactStore, folder: Path) -> tuple[str, dict[str, str]]:
    """Store every file of `folder`; the manifest's digest and the file digests by name."""
    files = {p.name: artifacts.put_file(p) for p in sorted(folder.iterdir()) if p.is_file()}
    manifest = json.dumps({"files": files}, sort_keys=True, separators=(",", ":")).encode()
    return artifacts.put_bytes(manifest), files


def publish_result(
    artifacts: ArtifactStore,
    models: ModelRegistry,
    *,
    run_id: str,
    recipe: Recipe,
    base: BaseModel,
    dataset: Dataset,
    folder: Path,
    template: str,
    metrics: dict[str, float],
) -> str:
    """Store and register the run's output; the reference that serves it."""
    digest, files = store_folder(artifacts, folder)
    lineage = {
        "run_id": run_id,
        "recipe": recipe.recipe,
        "recipe_hash": recipe.recipe_hash,
        "dataset": dataset.ref,
        "dataset_id": dataset.id,
        "base_model": base.ref,
        "base_model_id": base.id,
        "artifact": digest,
    }
    if recipe.method == "full":
        model = models.add(
            recipe.adapter_name,
            "safetensors",
            str(folder.resolve()),
            description=f"{base.ref} fully fine-tuned on {dataset.ref} by run {run_id}",
            meta={"training": lineage, "metrics": metrics},
        )
        logger.info("registered fully trained model %s", model.ref)
        return model.ref
    adapter = models.add_adapter(
        Adapter(
            name=recipe.adapter_name,
            base_model=base.ref,
            artifact=digest,
            method=recipe.method,
            chat_template=template,
            dataset=dataset.ref,
            recipe_hash=recipe.recipe_hash,
            metrics=metrics,
            inputs=[dataset.id, base.id],
            meta={"location": str(folder.resolve()), "files": files, "run_id": run_id},
        )
    )
    logger.info("registered adapter %s on %s", adapter.ref, base.ref)
    return f"{base.name}:{adapter.ref}"
