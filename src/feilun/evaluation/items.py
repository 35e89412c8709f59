"""Reading evaluation files: multiple-choice CSV/JSONL and SQuAD-style QA JSON/JSONL.

A malformed row never stops a run: it is skipped, counted and reported with its line number
(`Loaded.skipped`). A file with no usable row at all is an error naming the first problems.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from feilun.core.errors import BadInput

LETTERS = "ABCDEFGHIJ"
Layout = Literal["auto", "mmlu", "ceval", "jsonl"]
LAYOUTS = ("auto", "mmlu", "ceval", "jsonl")
_SPLIT_SUFFIXES = ("_dev", "_val", "_test", "_train")


@dataclass(frozen=True)
class McItem:
    """One multiple-choice question; `answer` indexes `choices`."""

    id: str
    subject: str
    question: str
    choices: tuple[str, ...]
    answer: int


@dataclass(frozen=True)
class QaItem:
    """One question over an optional context, with every acceptable answer."""

    id: str
    question: str
    context: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Skipped:
    """A row that was not used, where it is and why."""

    file: str
    line: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        """`{"file", "line", "reason"}`."""
        return {"file": self.file, "line": self.line, "reason": self.reason}


T = TypeVar("T")


@dataclass
class Loaded(Generic[T]):
    """The usable items of a file or folder, the rows skipped, and the bytes' digest."""

    path: str
    items: list[T] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    sha256: str = ""

    def first(self, limit: int | None) -> list[T]:
        """The first `limit` items (all of them when None): what a run with `--limit` scores."""
        return self.items[:limit] if limit else self.items


def _subject_of(path: Path) -> str:
    stem = path.stem
    for suffix in _SPLIT_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def read_text(path: Path) -> tuple[str, bytes]:
    """A file's text (UTF-8, else GB18030) and its bytes."""
    data = path.read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding), data
        except UnicodeDecodeError:
            continue
    raise BadInput(f"{path} is neither UTF-8 nor GB18030 text", "re-save the file as UTF-8")


def _files(path: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes)
        if not found:
            raise BadInput(
                f"folder {path} has no {'/'.join(suffixes)} files", "point at an evaluation file"
            )
        return found
    if not path.is_file():
        raise BadInput(f"evaluation file {path} does not exist", "check the path")
    return [path]


def _answer_index(value: Any, n_choices: int) -> int:
    """A letter (`"B"`), a 0-based index (`1`) or a digit string to a choice index."""
    if isinstance(value, bool):
        raise ValueError(f"answer {value!r} is not a letter or an index")
    if isinstance(value, int):
        index = value
    elif isinstance(value, str) and value.strip().upper() in LETTERS[:n_choices]:
        index = LETTERS.index(value.strip().upper())
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    else:
        raise ValueError(f"answer {value!r} is not one of {', '.join(LETTERS[:n_choices])}")
    if not 0 <= index < n_choices:
        raise ValueError(f"answer index {index} is outside the {n_choices} choices")
    return index


def _mc_from_json(row: Any, number: int, subject: str) -> McItem:
    if not isinstance(row, dict):
        raise ValueError("row is not a JSON object")
    question = row.get("question")
    choices = row.get("choices")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("no `question` text")
    if not isinstance(choices, list) or len(choices) < 2 or len(choices) > len(LETTERS):
        raise ValueError(f"`choices` must be a list of 2-{len(LETTERS)} strings")
    if "answer" in row and row["answer"] not in (None, ""):
        answer = _answer_index(row["answer"], len(choices))
    elif "answer_index" in row:
        answer = _answer_index(row["answer_index"], len(choices))
    else:
        raise ValueError("no `answer` (a letter such as 'B', or a 0-based index)")
    return McItem(
        id=str(row.get("id") or f"{subject}-{number}"),
        subject=str(row.get("subject") or subject),
        question=question,
        choices=tuple(str(c) for c in choices),
        answer=answer,
    )


def _mc_csv_rows(text: str, layout: Layout) -> Iterator[tuple[int, dict[str, str] | None, str]]:
    """(line, {question, A.., answer, id}, problem) per CSV row, in either layout."""
    reader = csv.reader(io.StringIO(text))
    header: list[str] | None = None
    for row in reader:
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if header is None and layout != "mmlu":
            lowered = [cell.strip().lower() for cell in row]
            if "question" in lowered:
                header = lowered
                continue
            if layout == "ceval":
                yield line, None, "no header row with a `question` column (C-Eval/CMMLU layout)"
                return
            layout = "mmlu"
        if header is None:  # MMLU: question, choices..., answer; no header
            if len(row) < 4:
                yield line, None, f"{len(row)} columns; MMLU rows are question,A,B,C,D,answer"
                continue
            cells = {"question": row[0], "answer": row[-1]}
            cells.update({LETTERS[i]: c for i, c in enumerate(row[1:-1])})
            yield line, cells, ""
            continue
        if len(row) != len(header):
            yield line, None, f"{len(row)} columns, the header has {len(header)}"
            continue
        named = dict(zip(header, row, strict=True))
        cells = {"question": named["question"], "answer": named.get("answer", "")}
        cells["id"] = named.get("id") or named.get("") or ""
        letters = {k.upper(): v for k, v in named.items() if len(k) == 1 and k.upper() in LETTERS}
        cells.update(letters)
        yield line, cells, ""


def _mc_from_cells(cells: dict[str, str], line: int, subject: str) -> McItem:
    choices = [cells[letter] for letter in LETTERS if letter in cells]
    if not cells["question"].strip():
        raise ValueError("empty question")
    if not cells.get("answer", "").strip():
        raise ValueError("no answer")
    return McItem(
        id=f"{subject}-{cells.get('id') or line}",
        subject=subject,
        question=cells["question"],
        choices=tuple(choices),
        answer=_answer_index(cells["answer"], len(choices)),
    )


def load_mc(path: Path, layout: Layout = "auto") -> Loaded[McItem]:
    """Multiple-choice items of a CSV/JSONL file or a folder of them.

    CSV: the MMLU layout (no header: question,A,B,C,D,answer) or the C-Eval/CMMLU one (a
    header naming `question`, `A`…, `answer`); the subject is the file name without
    `_dev`/`_val`/`_test`. JSONL: `question`, `choices`, `answer` (letter or index) or
    `answer_index`, optional `id` and `subject`.
    """
    if layout not in LAYOUTS:
        raise BadInput(f"unknown layout {layout!r}", f"use one of {', '.join(LAYOUTS)}")
    loaded: Loaded[McItem] = Loaded(str(path))
    digest = hashlib.sha256()
    for file in _files(path, (".csv", ".jsonl", ".json")):
        text, data = read_text(file)
        digest.update(data)
        subject = _subject_of(file)
        if file.suffix.lower() == ".csv" and layout != "jsonl":
            for line, cells, problem in _mc_csv_rows(text, layout):
                try:
                    if cells is None:
                        raise ValueError(problem)
                    loaded.items.append(_mc_from_cells(cells, line, subject))
                except ValueError as e:
                    loaded.skipped.append(Skipped(str(file), line, str(e)))
        else:
            for line, row, problem in json_rows(text):
                try:
                    if problem:
                        raise ValueError(problem)
                    loaded.items.append(_mc_from_json(row, line, subject))
                except ValueError as e:
                    loaded.skipped.append(Skipped(str(file), line, str(e)))
    loaded.sha256 = "sha256:" + digest.hexdigest()
    return check_loaded(loaded, "multiple-choice")


def json_rows(text: str) -> Iterator[tuple[int, Any, str]]:
    """(line number, parsed row or None, problem or "") for each non-blank JSONL line."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), ""
        except json.JSONDecodeError as e:
            yield number, None, f"not JSON: {e.msg} at column {e.colno}"


def qa_from_json(row: Any, number: int) -> QaItem:
    """A QA item from one JSON row (`question`, `answer(s)`, optional `context`, `id`)."""
    if not isinstance(row, dict):
        raise ValueError("row is not a JSON object")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("no `question` text")
    answers = row.get("answers")
    if isinstance(answers, dict):  # the SQuAD/HF layout: {"text": [...], "answer_start": [...]}
        answers = answers.get("text")
    if answers is None and "answer" in row:
        answers = [row["answer"]]
    if isinstance(answers, list):
        answers = [a.get("text") if isinstance(a, dict) else a for a in answers]
    if not isinstance(answers, list) or not any(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError("no `answers` (a list of acceptable answer strings)")
    return QaItem(
        id=str(row.get("id") or number),
        question=question,
        context=str(row.get("context") or ""),
        answers=tuple(a for a in answers if isinstance(a, str) and a.strip()),
    )


def _squad_rows(document: Any, file: Path) -> Iterator[tuple[int, Any, str]]:
    """Rows of a SQuAD JSON file (`data[].paragraphs[].qas[]`), numbered in file order."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise BadInput(f"{file} is JSON but not SQuAD's layout", "expected {'data': [...]}")
    number = 0
    for article in document["data"]:
        for paragraph in article.get("paragraphs", []) if isinstance(article, dict) else []:
            context = paragraph.get("context", "")
            for qa in paragraph.get("qas", []):
                number += 1
                if not isinstance(qa, dict):
                    yield number, None, "question entry is not an object"
                    continue
                yield number, {**qa, "context": context}, ""


def load_qa(path: Path) -> Loaded[QaItem]:
    """QA items: SQuAD JSON (`data/paragraphs/qas`) or JSONL (`question`, `answers`, `context`).

    In SQuAD JSON the reported line is the question's position in the file (1 = first).
    """
    loaded: Loaded[QaItem] = Loaded(str(path))
    digest = hashlib.sha256()
    for file in _files(path, (".json", ".jsonl")):
        text, data = read_text(file)
        digest.update(data)
        rows: Iterator[tuple[int, Any, str]]
        if file.suffix.lower() == ".json":
            try:
                rows = _squad_rows(json.loads(text), file)
            except json.JSONDecodeError as e:
                raise BadInput(f"{file} is not JSON: {e.msg} at line {e.lineno}", "fix it") from e
        else:
            rows = json_rows(text)
        _add_rows(loaded, rows, qa_from_json, str(file))
    loaded.sha256 = "sha256:" + digest.hexdigest()
    return check_loaded(loaded, "QA")


def load_jsonl(path: Path, parse: Callable[[Any, int], T], what: str) -> Loaded[T]:
    """Each JSONL row as `parse(row, line)` makes it; a row it refuses (ValueError) is skipped.

    BadInput when the file is missing or no row is usable (`what` names the kind of row).
    """
    if not path.is_file():
        raise BadInput(f"{what} file {path} does not exist", "check the file's path")
    text, data = read_text(path)
    loaded: Loaded[T] = Loaded(str(path), sha256="sha256:" + hashlib.sha256(data).hexdigest())
    _add_rows(loaded, json_rows(text), parse, str(path))
    return check_loaded(loaded, what)


def _add_rows(
    loaded: Loaded[T],
    rows: Iterable[tuple[int, Any, str]],
    parse: Callable[[Any, int], T],
    source: str,
) -> None:
    """Each (line, row, problem) as `parse` makes it; one with a problem or refused is skipped."""
    for line, row, problem in rows:
        try:
            if problem:
                raise ValueError(problem)
            loaded.items.append(parse(row, line))
        except ValueError as e:
            loaded.skipped.append(Skipped(source, line, str(e)))


def check_loaded(loaded: Loaded[T], what: str) -> Loaded[T]:
    """`loaded`, or BadInput naming the first problems when no row was usable."""
    if not loaded.items:
        first = "; ".join(f"line {s.line}: {s.reason}" for s in loaded.skipped[:3]) or "empty"
        raise BadInput(
            f"{loaded.path} has no usable {what} rows ({len(loaded.skipped)} skipped: {first})",
            "see docs/evaluation.md for the accepted layouts",
        )
    return loaded
