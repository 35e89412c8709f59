"""Suites: a YAML list of tasks run against one model, stored as one EvalReport.

A task names its kind (`mc`, `qa`, `safety`, `rag`, `judge`, `parity`), its file and its
settings.
Relative paths are read from the current folder, else from the suite file's folder. The model
is opened once per suite: a local model's option scorer and chat runtime are loaded only if a
task needs them; a rag task gets the model answering from its knowledge base through
`EvalContext.open_rag`, which the composition root supplies.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from feilun.core.errors import ConfigError
from feilun.core.protocols import ChatModel
from feilun.core.records import EvalReport
from feilun.evaluation import judge, mc, parity, qa, rag, safety
from feilun.evaluation.contamination import (
    NGRAM,
    clean_metrics,
    dataset_texts,
    find_contaminated,
)
from feilun.evaluation.items import Layout, load_mc, load_qa
from feilun.evaluation.judge import Mode as JudgeMode
from feilun.evaluation.reports import build_payload, save_report
from feilun.evaluation.results import TaskResult
from feilun.evaluation.scoring import HfScorer, open_scorer

if TYPE_CHECKING:
    from feilun.models.registry import ModelRegistry
    from feilun.store.artifacts import ArtifactStore
    from feilun.store.catalog import SqlCatalog

SuiteProgress = Callable[[str, int, int], None]


class TaskSpec(pydantic.BaseModel):
    """One task of a suite."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(description="Task name, unique in the suite; keys its scores.")
    kind: str = pydantic.Field(description="Task kind: mc, qa, safety, rag, judge or parity.")
    path: str = pydantic.Field(description="Evaluation file or folder.")
    format: mc.PromptFormat = pydantic.Field("auto", description="mc prompt: mmlu, ceval, auto.")
    layout: Layout = pydantic.Field("auto", description="mc file layout: mmlu, ceval, jsonl, auto.")
    shots: int = pydantic.Field(0, ge=0, le=10, description="mc few-shot examples per question.")
    fewshot_path: str | None = pydantic.Field(
        None, description="mc file of few-shot examples (default: the task file itself)."
    )
    scoring: mc.Scoring = pydantic.Field(
        "auto", description="mc: loglikelihood (local models), generate, or auto."
    )
    limit: int | None = pydantic.Field(None, ge=1, description="Score only the first N items.")
    max_tokens: int | None = pydantic.Field(None, ge=1, description="Most tokens generated.")
    kb: str | None = pydantic.Field(None, description="rag: knowledge base NAME[@version].")
    judge: str | None = pydantic.Field(
        None, description="judge: the grading model (a name, name@2, base:adapter, endpoint)."
    )
    mode: JudgeMode = pydantic.Field(
        "rubric", description="judge: rubric (score 1-5) or pairwise (vs the item's reference)."
    )
    rubric: str | None = pydantic.Field(
        None, description="judge: rubric text, or a .md/.txt file of it (default: built in)."
    )
    retries: int = pydantic.Field(
        2, ge=0, le=5, description="judge: re-asks, with a stricter reminder, on no verdict."
    )
    served: str | None = pydantic.Field(
        None, description="parity: the same model as users reach it (a registered endpoint)."
    )

    @pydantic.field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in TASK_KINDS:
            raise ValueError(f"unknown task kind {kind!r}; known kinds: {', '.join(TASK_KINDS)}")
        return kind

    @pydantic.model_validator(mode="after")
    def _kind_settings(self) -> TaskSpec:
        needed = {"rag": "kb", "judge": "judge", "parity": "served"}.get(self.kind)
        if needed and not getattr(self, needed):
            raise ValueError(f"a {self.kind} task needs `{needed}`")
        return self


class Suite(pydantic.BaseModel):
    """A named list of tasks and the seed every statistic uses."""

    model_config = pydantic.ConfigDict(extra="forbid")
    name: str = pydantic.Field(description="Suite name; reports are versions of it.")
    seed: int = pydantic.Field(1234, description="Seed of sampling and bootstrap resamples.")
    contamination: list[str] = pydantic.Field(
        default_factory=list,
        description="Datasets (name@version) to check items against, besides the adapter's.",
    )
    tasks: list[TaskSpec] = pydantic.Field(min_length=1, description="The tasks, in order.")

    @pydantic.model_validator(mode="after")
    def _unique_names(self) -> Suite:
        names = [t.name for t in self.tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"task names must be unique; repeated: {', '.join(duplicates)}")
        return self


def load_suite(path: Path) -> tuple[Suite, Path]:
    """Parse and validate a suite YAML; the suite and its folder (for relative paths)."""
    import yaml

    if not path.is_file():
        raise ConfigError(f"suite file {path} does not exist", "see recipes/eval/ for examples")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Suite.model_validate(values), path.parent
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}", "fix the file") from e
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid suite {path}: {problems}", "fix those keys") from e


def resolve_path(value: str, base: Path | None) -> Path:
    """`value` as written if it exists, else relative to the suite's folder."""
    path = Path(value).expanduser()
    if path.exists() or path.is_absolute() or base is None:
        return path
    return base / path


@dataclass
class EvalContext:
    """The workspace pieces a run needs."""

    catalog: SqlCatalog
    artifacts: ArtifactStore
    models: ModelRegistry
    open_rag: rag.RagOpener | None = None  # from the composition root: rag tasks need it


class ModelHandle:
    """One model reference, its chat runtime and option scorer opened on first use."""

    def __init__(
        self, models: ModelRegistry, ref: str, open_rag: rag.RagOpener | None = None
    ) -> None:
        self.models = models
        self.resolved = models.resolve(ref)
        self.ref = self.resolved.ref
        self.open_rag = open_rag

    @functools.cached_property
    def chat(self) -> ChatModel:
        """The ChatModel users get (the registry's runtime)."""
        return self.models.open(self.resolved)

    @functools.cached_property
    def scorer(self) -> HfScorer | None:
        """Option log-likelihoods of a local model's own weights; None for endpoints."""
        return open_scorer(self.models, self.ref)

    def open_kb(self, kb: str) -> rag.KbAccess:
        """The model answering from knowledge base `kb`, as the gateway's `rag:KB` does."""
        if self.open_rag is None:
            raise ConfigError(
                f"cannot open knowledge base {kb!r}: this run was started without knowledge bases",
                "run rag tasks with `feilun eval run`, or build EvalContext with open_rag",
            )
        return self.open_rag(self.chat, kb)

    @property
    def training_datasets(self) -> list[str]:
        """The dataset the evaluated adapter was trained on (`name@version`), if any."""
        adapter = self.resolved.adapter
        return [adapter.dataset] if adapter is not None and adapter.dataset else []

    @property
    def lineage(self) -> list[str]:
        """Ids of the base model and adapter evaluated."""
        adapter = self.resolved.adapter
        return [self.resolved.base.id] + ([adapter.id] if adapter else [])


TaskRunner = Callable[[TaskSpec, Path | None, ModelHandle, int, Any], TaskResult]


def _run_mc(
    spec: TaskSpec, base: Path | None, model: ModelHandle, seed: int, progress: Any
) -> TaskResult:
    loaded = load_mc(resolve_path(spec.path, base), spec.layout)
    pool = None
    if spec.fewshot_path:
        pool = load_mc(resolve_path(spec.fewshot_path, base), spec.layout).items
    config = mc.McConfig(
        format=spec.format,
        shots=spec.shots,
        limit=spec.limit,
        scoring=spec.scoring,
        max_tokens=spec.max_tokens or 16,
        seed=seed,
    )
    wants_scorer = spec.scoring != "generate"
    scorer = model.scorer if wants_scorer else None
    chat = model.chat if scorer is None else None
    return mc.run_mc(
        spec.name, loaded, config, scorer=scorer, chat=chat, fewshot_pool=pool, progress=progress
    )


def _run_qa(
    spec: TaskSpec, base: Path | None, model: ModelHandle, seed: int, progress: Any
) -> TaskResult:
    loaded = load_qa(resolve_path(spec.path, base))
    config = qa.QaConfig(limit=spec.limit, max_tokens=spec.max_tokens or 48, seed=seed)
    return qa.run_qa(spec.name, loaded, config, chat=model.chat, progress=progress)


def _run_safety(
    spec: TaskSpec, base: Path | None, model: ModelHandle, seed: int, progress: Any
) -> TaskResult:
    loaded = safety.load_prompts(resolve_path(spec.path, base))
    config = safety.SafetyConfig(limit=spec.limit, max_tokens=spec.max_tokens or 64, seed=seed)
    return safety.run_safety(spec.name, loaded, config, chat=model.chat, progress=progress)


def _run_rag(
    spec: TaskSpec, base: Path | None, model: ModelHandle, seed: int, progress: Any
) -> TaskResult:
    loaded = rag.load_rag(resolve_path(spec.path, base))
    access = model.open_kb(str(spec.kb))
    config = rag.RagConfig(
        kb=access.ref, k=access.k, limit=spec.limit, max_tokens=spec.max_tokens or 128, seed=seed
    )
    return rag.run_rag(spec.name, loaded, config, access=access, progress=progress)


def _run_judge(
    spec: TaskSpec, base: Path | None, model: ModelHandle, seed: int, progress: Any
) -> TaskResult:
    loaded = judge.load_judged(resolve_path(spec.path, base), spec.mode)
    rubric = spec.rubric or ""
    if judge.names_file(rubric):
        rubric = judge.read_rubric(resolve_path(rubric, base))
    grader = ModelHandle(model.models, str(spec.judge))
    config = judge.JudgeConfig(
        mode=spec.mode,
        judge=grader.ref,
        rubric=rubric,
        retries=spec.retries,
        limit=spec.limit,
        max_tokens=spec.max_tokens or 256,
        seed=seed,
    )
    return judge.run_judge(
        spec.name, loaded, config, chat=model.chat, judge=grader.chat, progress=progress
    )


def _run_parity(
    spec: TaskSpec, base: Path | None, model: ModelHandle, seed: int, progress: Any
) -> TaskResult:
    loaded = parity.load_parity(resolve_path(spec.path, base))
    served = ModelHandle(model.models, str(spec.served))
    config = parity.ParityConfig(
        served=served.ref, limit=spec.limit, max_tokens=spec.max_tokens or 32, seed=seed
    )
    return parity.run_parity(
        spec.name, loaded, config, local=model.chat, served=served.chat, progress=progress
    )


TASK_KINDS: dict[str, TaskRunner] = {
    "mc": _run_mc,
    "qa": _run_qa,
    "safety": _run_safety,
    "rag": _run_rag,
    "judge": _run_judge,
    "parity": _run_parity,
}


def run_suite(
    ctx: EvalContext,
    suite: Suite,
    model_ref: str,
    *,
    base: Path | None = None,
    limit: int | None = None,
    progress: SuiteProgress | None = None,
) -> EvalReport:
    """Run every task of `suite` against `model_ref` and store the EvalReport."""
    started = time.perf_counter()
    model = ModelHandle(ctx.models, model_ref, ctx.open_rag)
    results = []
    for spec in suite.tasks:
        if limit is not None:
            spec = spec.model_copy(update={"limit": min(limit, spec.limit or limit)})
        task_progress = (
            (lambda done, total, name=spec.name: progress(name, done, total)) if progress else None
        )
        results.append(TASK_KINDS[spec.kind](spec, base, model, suite.seed, task_progress))
    datasets = [*suite.contamination, *model.training_datasets]
    if datasets:
        check_contamination(ctx, results, datasets, suite.seed)
    card = ctx.models.card(model.ref)
    payload = build_payload(
        model=model.ref,
        suite=suite.name,
        seed=suite.seed,
        tasks=results,
        wall_time_s=time.perf_counter() - started,
        chat_template=str(card.get("chat_template", "")),
        model_card={k: card.get(k) for k in ("ref", "id", "source", "location", "sha256")},
    )
    return save_report(ctx.catalog, ctx.artifacts, payload, inputs=model.lineage)


def check_contamination(
    ctx: EvalContext, results: list[TaskResult], datasets: list[str], seed: int
) -> None:
    """Flag items sharing n-grams with `datasets`; add scores without them to each task."""
    pinned, texts = dataset_texts(ctx.catalog, ctx.artifacts, datasets)
    items = {f"{r.name}\x00{item_id}": text for r in results for item_id, text in r.texts.items()}
    flagged = find_contaminated(items, texts)
    for result in results:
        ids = {key.split("\x00", 1)[1] for key in flagged if key.startswith(result.name + "\x00")}
        for row in result.items:
            row["contaminated"] = row["id"] in ids
        result.contamination = {
            "datasets": pinned,
            "ngram": NGRAM,
            "n_flagged": len(ids),
            "flagged": sorted(ids),
            "metrics_clean": clean_metrics(result.items, result.primary, seed),
        }


def single_task_suite(
    kind: str, path: Path, contamination: list[str] | None = None, **settings: Any
) -> Suite:
    """The one-task suite behind `feilun eval mc FILE` and `feilun eval qa FILE`."""
    stem = path.stem if path.is_file() else path.name
    name = f"{kind}-{stem}".replace(".", "-")[:64]
    clean = {k: v for k, v in settings.items() if v is not None}
    try:
        task = TaskSpec(name=stem, kind=kind, path=str(path), **clean)
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"--{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid option: {problems}", "see `feilun eval --help`") from e
    return Suite(name=name, tasks=[task], contamination=contamination or [])
