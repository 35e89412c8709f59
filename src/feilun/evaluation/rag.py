"""RAG task: questions answered from a knowledge base, scored on answers, citations and support.

Each question goes through the retrieval-augmented model the gateway and `feilun ask` run;
the composition root hands it over as a `KbAccess` (this stage never imports the knowledge
stage). Per item: EM/F1/contains of the answer (as the qa kind scores them); retrieval hit@k
and citation precision/recall against the gold `evidence`; faithfulness, the share of answer
sentences the knowledge stage's grounding check found supported by the passages. A passage
matches a gold string when it holds at least half of it as one run of characters (words for
English; whitespace and punctuation ignored), or when the string is the passage's chunk id.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from feilun.core.protocols import ChatModel, Grounding, Hit
from feilun.evaluation.items import Loaded, QaItem, load_jsonl, qa_from_json
from feilun.evaluation.metrics import bootstrap_interval, segment_mixed
from feilun.evaluation.qa import METRICS as ANSWER_METRICS
from feilun.evaluation.qa import score_answer
from feilun.evaluation.results import Progress, TaskResult, ask_all, greedy_requests

MIN_EVIDENCE_OVERLAP = 0.5  # share of a gold string a passage must hold as one run
EVIDENCE_METRICS = ("hit_at_k", "citation_precision", "citation_recall")
METRICS = (*ANSWER_METRICS, *EVIDENCE_METRICS, "faithfulness")
_MARKER = re.compile(r"\[\d{1,2}\]")


@dataclass(frozen=True)
class KbAccess:
    """A knowledge base as the RAG path sees it, pinned to one version."""

    ref: str  # name@version
    model: ChatModel  # answers from the KB; a Completion's Grounding holds what it retrieved
    k: int  # passages it retrieves per question


RagOpener = Callable[[ChatModel, str], KbAccess]  # (model under test, kb) -> its access


@dataclass(frozen=True)
class RagItem:
    """A question, its acceptable answers, and the gold evidence (texts or chunk ids)."""

    qa: QaItem
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class RagConfig:
    """Settings of one RAG run."""

    kb: str = ""
    k: int = 5
    limit: int | None = None
    max_tokens: int = 128
    seed: int = 1234


def _evidence(row: dict[str, Any]) -> tuple[str, ...]:
    value = row.get("evidence") or []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ValueError("`evidence` must be a string or a list of strings")
    return tuple(v for v in values if v.strip())


def load_rag(path: Path) -> Loaded[RagItem]:
    """JSONL rows with `question`, `answer` or `answers`, optional `evidence`; bad rows skipped."""
    return load_jsonl(
        path, lambda row, line: RagItem(qa_from_json(row, line), _evidence(row)), "RAG"
    )


def holds(passage: Hit, gold: str) -> bool:
    """Whether `passage` is `gold`'s chunk or holds at least half of `gold` as one run."""
    if gold == passage.chunk_id:
        return True
    wanted = segment_mixed(gold, drop_punctuation=True)
    if not wanted:
        return False
    text = segment_mixed(passage.text, drop_punctuation=True)
    run = difflib.SequenceMatcher(None, text, wanted, autojunk=False).find_longest_match()
    return run.size >= MIN_EVIDENCE_OVERLAP * len(wanted)


def score_item(answer: str, grounding: Grounding, item: RagItem) -> dict[str, float]:
    """Every metric of one answer that is defined for it (evidence given, something cited).

    hit@k is scored on what the answer's own retrieval returned (`grounding.retrieved`).
    """
    scores = score_answer(_MARKER.sub("", answer), item.qa.answers)
    hits = grounding.retrieved
    by_id = {hit.chunk_id: hit for hit in hits}
    cited = [
        by_id.get(c.chunk_id, Hit(chunk_id=c.chunk_id, score=0.0, text=c.quote))
        for c in grounding.citations
    ]
    gold = item.evidence
    if gold:
        scores["hit_at_k"] = float(any(holds(h, g) for h in hits for g in gold))
        scores["citation_recall"] = sum(any(holds(c, g) for c in cited) for g in gold) / len(gold)
    if gold and cited:
        correct = sum(any(holds(c, g) for g in gold) for c in cited)
        scores["citation_precision"] = correct / len(cited)
    unsupported = len(grounding.unsupported_sentences)
    judged = grounding.checked_sentences
    if grounding.answered and judged:
        scores["faithfulness"] = (judged - unsupported) / judged
    return scores


def run_rag(
    name: str,
    loaded: Loaded[RagItem],
    config: RagConfig,
    *,
    access: KbAccess,
    progress: Progress | None = None,
) -> TaskResult:
    """Ask every item (up to `limit`) through the knowledge base greedily and score it."""
    started = time.perf_counter()
    items = loaded.first(config.limit)
    prompts = [item.qa.question for item in items]
    params, conversations = greedy_requests(prompts, config.max_tokens, config.seed)
    answers = ask_all(access.model, conversations, params, progress=progress)
    rows: list[dict[str, Any]] = []
    for item, answer in zip(items, answers, strict=True):
        row: dict[str, Any] = {
            "id": item.qa.id,
            "references": list(item.qa.answers),
            "evidence": list(item.evidence),
        }
        if answer.error:
            row.update(generation=None, score=None, error=answer.error)
            rows.append(row)
            continue
        grounding = answer.grounding or Grounding()
        scores = score_item(answer.text, grounding, item)
        row.update(
            generation=answer.text,
            retrieved=[hit.chunk_id for hit in grounding.retrieved],
            cited=[c.chunk_id for c in grounding.citations],
            unsupported=grounding.unsupported_sentences,
            answered=grounding.answered,
            score=scores["f1"],
            scores=scores,
        )
        rows.append(row)
    return TaskResult(
        name=name,
        kind="rag",
        path=loaded.path,
        sha256=loaded.sha256,
        primary="f1",
        config=asdict(config),
        prompt={"answer_metrics": "qa", "min_evidence_overlap": MIN_EVIDENCE_OVERLAP},
        scoring="generate",
        decoding=params.model_dump(),
        items=rows,
        metrics=_aggregate(rows, config.seed),
        subjects={m: {"n": len(_values(rows, m))} for m in METRICS},
        skipped=loaded.skipped,
        wall_time_s=time.perf_counter() - started,
        texts={item.qa.id: "\n".join([item.qa.question, *item.qa.answers]) for item in items},
    )


def _values(rows: list[dict[str, Any]], metric: str) -> list[float]:
    return [float(r["scores"][metric]) for r in rows if metric in r.get("scores", {})]


def _aggregate(rows: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    return {m: bootstrap_interval(_values(rows, m), seed) for m in METRICS}
