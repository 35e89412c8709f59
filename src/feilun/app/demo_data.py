"""The demo's documents and question set: the packaged Lanshan City Gas handbook, or yours.

A question set is JSONL, one item per line: `id`, `question`, `answer` (short, exact), and
optionally `lang` (zh/en, else guessed), `doc` and `evidence` (the passage it comes from),
`fact` (items asking about the same fact share it) and `split`:

- `train`: seed training examples (SFT rows in the evaluation's own prompt format);
- `users`: what the simulated users ask the served model; the answers are the answer key
  their feedback is judged by (held aside: never trained on directly);
- `eval`: held out for the gate.

Items without a `split` are assigned by a stable hash of their `fact` (else their id), so
questions about one fact land on one side: half train, a quarter users, a quarter eval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from feilun.core.errors import BadInput
from feilun.evaluation.items import QaItem
from feilun.evaluation.metrics import has_chinese
from feilun.evaluation.qa import render_messages

Split = Literal["train", "users", "eval"]
SPLITS: tuple[Split, ...] = ("train", "users", "eval")
_BUCKETS: tuple[Split, ...] = ("train", "train", "users", "eval")  # by hash: 1/2, 1/4, 1/4


@dataclass(frozen=True)
class DemoItem:
    """One question of the demo's question set, with its gold answer and where it comes from."""

    id: str
    question: str
    answer: str
    lang: str
    split: Split
    fact: str
    doc: str = ""
    evidence: str = ""

    def messages(self, *, with_answer: bool = False) -> list[dict[str, str]]:
        """The question as the evaluation asks it (system prompt, `Question: …`)."""
        item = QaItem(id=self.id, question=self.question, context="", answers=(self.answer,))
        rendered = [{"role": m.role, "content": m.content} for m in render_messages(item)]
        answer = [{"role": "assistant", "content": self.answer}] if with_answer else []
        return rendered + answer


def packaged_corpus() -> tuple[Path, Path]:
    """The packaged demo corpus: its documents folder and question file."""
    root = Path(str(resources.files("feilun.app").joinpath("demo_corpus")))
    return root / "docs", root / "qa.jsonl"


def _split_of(key: str) -> Split:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return _BUCKETS[digest[0] % len(_BUCKETS)]


def _item(row: Any, line: int, path: Path) -> DemoItem:
    where = f"{path}:{line}"
    if not isinstance(row, dict):
        raise BadInput(f"{where} is not a JSON object", "one item per line: {id, question, answer}")
    question, answer = row.get("question"), row.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise BadInput(f"{where} has no `question`", "give every item a question")
    if not isinstance(answer, str) or not answer.strip():
        raise BadInput(f"{where} has no `answer`", "give every item a short, exact answer")
    item_id = str(row.get("id") or f"q{line}")
    fact = str(row.get("fact") or item_id)
    split = row.get("split") or _split_of(fact)
    if split not in SPLITS:
        raise BadInput(f"{where}: split {split!r} is unknown", f"use one of {', '.join(SPLITS)}")
    return DemoItem(
        id=item_id,
        question=question.strip(),
        answer=answer.strip(),
        lang=str(row.get("lang") or ("zh" if has_chinese(question) else "en")),
        split=split,
        fact=fact,
        doc=str(row.get("doc") or ""),
        evidence=str(row.get("evidence") or ""),
    )


def load_items(path: Path) -> list[DemoItem]:
    """Read and check a question set; every split must have at least one item."""
    if not path.is_file():
        raise BadInput(f"question file {path} does not exist", "pass --qa FILE (JSONL)")
    items = []
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if text.strip():
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise BadInput(f"{path}:{line} is not JSON: {e}", "one JSON object a line") from e
            items.append(_item(row, line, path))
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise BadInput(f"{path}: repeated ids {', '.join(repeated[:5])}", "make ids unique")
    missing = [s for s in SPLITS if not any(item.split == s for item in items)]
    if missing:
        raise BadInput(
            f"{path}: no {' or '.join(missing)} items among {len(items)}",
            "give more items, or set `split` (train/users/eval) on some",
        )
    return items


def of_split(items: Iterable[DemoItem], split: Split) -> list[DemoItem]:
    """The items of one split, in file order."""
    return [item for item in items if item.split == split]


def sft_rows(items: Sequence[DemoItem]) -> list[dict[str, Any]]:
    """SFT rows (system prompt, question, gold answer) of the evaluation's own prompt format."""
    return [
        {
            "id": f"demo_{item.id}",
            "messages": item.messages(with_answer=True),
            "meta": {"source": "demo-qa", "item": item.id, "fact": item.fact, "doc": item.doc},
        }
        for item in items
    ]


def eval_rows(
    items: Sequence[DemoItem], contexts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """QA evaluation rows (`question`, `answers`, optional retrieved `context`)."""
    return [
        {
            "id": item.id,
            "question": item.question,
            "answers": [item.answer],
            **({"context": contexts[i]} if contexts is not None else {}),
        }
        for i, item in enumerate(items)
    ]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as UTF-8 JSONL (the folder is made); the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path
