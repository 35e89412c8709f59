"""Rule-written questions: a passage's own structure, asked about, answered by its own sentence.

For passages a model cannot serve (a small model on Chinese text): definitions, numeric facts,
scopes and obligations of regulation text become questions whose answer is the sentence that
states them, as a span of the passage. No model and no randomness: the same passage always
gives the same questions, in text order. `synth` still grounds each pair before keeping it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from feilun.data.passages import Passage, split_sentences

TEMPLATE_IDS = {"zh": "rules-zh-1", "en": "rules-en-1"}
#: What each rule asks, by language: stored with the dataset's recipe.
RULES = {
    "zh": {
        "definition": "「X，是指Y」→「X是指什么？」",
        "number": "「…处1万元以上10万元以下罚款」→「…处多少罚款？」; 「在90日内」→「在多少日内」",
        "scope": "「X包括：Y」→「X包括哪些？」",
        "obligation": "「X应当/必须/不得Y」→「X应当/必须/不得做什么？」",
    },
    "en": {
        "definition": '"X" means Y → What does "X" mean?',
        "purpose": "The purpose of X is Y → What is the purpose of X?",
        "obligation": "The Secretary shall prescribe Y → What shall the Secretary prescribe?",
    },
}
# `本条例`, `本法`… in a question become the document's title, so the question stands alone.
_SELF_REFERENCE = re.compile(r"本(条例|法|规定|办法|细则|准则|决定)")
MAX_QUESTION_CHARS = 100
# `企业应当做什么？` has a hundred answers in one law: an obligation's subject needs some detail.
MIN_SUBJECT_CHARS = 7
# Article numbers and list labels before a sentence: `第五条 `, `（一）`, `(b) `, `2. `.
_LEAD = re.compile(
    r"(?:第[一二三四五六七八九十百千零〇两\d]+条\s*|[（(](?:[一二三四五六七八九十]+|\d{1,3}|[a-zA-Z]"
    r"{1,4})[)）]\s*|\d{1,3}[.、]\s*)*"
)
# A sentence that goes on from the one before (`逾期不改正的，处…`) asks nothing by itself.
_DEPENDENT = re.compile(
    r"逾期|拒不|情节|确需|(?:依照|有)?前款|其|该|上述|此外|同时|但是|however\b", re.I
)


@dataclass(frozen=True)
class RuleQuestion:
    """A question and its answer, `passage.text[start:end]`, written by `rule`."""

    question: str
    start: int
    end: int
    rule: str


def rule_questions(passage: Passage) -> list[RuleQuestion]:
    """One question per sentence the rules can ask about, in text order.

    The answer is the whole sentence, less a leading article number or list label; a sentence
    that opens a list (ends in a colon) says too little to answer anything.
    """
    rules = _ZH_RULES if passage.language == "zh" else _EN_RULES
    title = passage.document.title or ""
    found = []
    for start, end in split_sentences(passage.text):
        lead = _LEAD.match(passage.text, start, end)
        start = lead.end() if lead else start
        sentence = passage.text[start:end]
        if not sentence or sentence.endswith((":", "：")) or _DEPENDENT.match(sentence):
            continue
        for rule, ask in rules:
            question = ask(sentence)
            if question and len(question) <= MAX_QUESTION_CHARS:
                found.append(RuleQuestion(_name_title(question, title), start, end, rule))
                break
    return found


def _name_title(question: str, title: str) -> str:
    """`本条例` → `《城镇燃气管理条例》` when the title is of that kind; else as it was."""
    return _SELF_REFERENCE.sub(lambda m: f"《{title}》" if title.endswith(m[1]) else m[0], question)


# -- Chinese -------------------------------------------------------------------------------

_NUM = r"(?:\d+(?:\.\d+)?|[一二三四五六七八九十百千两]+)"
_UNIT = r"(?:个工作日|个月|日|天|周|年|小时|分钟|万元|元|千米|公里|米|公斤|吨|人|次|倍|%|％)"
# A range (`1万元以上10万元以下`) becomes one `多少`; a single number keeps its unit (`多少日`).
_RANGE = re.compile(rf"(?<!第){_NUM}{_UNIT}?以上{_NUM}{_UNIT}以下")
_SINGLE = re.compile(  # not `第二十九次`, `上一年`, nor a date such as `2010年11月19日`
    rf"(?<![第上下\d年月一二三四五六七八九十百千两]){_NUM}(?P<unit>{_UNIT})(?![\d一二三四五六七八九十]+月)"
)
_TIME = re.compile(r"个工作日|个月|日|天|周|年|小时|分钟")
_TIME_TAIL = re.compile(r"(?:以)?[内前后]")
_CLAUSE_END = re.compile(r"[，；。！？]")
_MODAL = re.compile(r"应当|必须|不得|严禁")


def _zh_definition(sentence: str) -> str | None:
    term, found, _ = sentence.partition("是指")
    term = term.rstrip("，,")
    return f"{term}是指什么？" if found and 2 <= len(term) <= 40 else None


def _zh_number(sentence: str) -> str | None:
    """The sentence up to the end of the clause with the first number, which becomes 多少."""
    found = _RANGE.search(sentence) or _SINGLE.search(sentence)
    if found is None:
        return None
    clause_end = _CLAUSE_END.search(sentence, found.end())
    if clause_end and _TIME_TAIL.fullmatch(sentence[found.end() : clause_end.start()]):
        clause_end = _CLAUSE_END.search(sentence, clause_end.end())  # `5日内，将…报告`: what
    asked = sentence[: clause_end.start() if clause_end else len(sentence)]
    is_digits = found.re is _SINGLE and found.group()[0].isdigit()
    if is_digits and not sentence[len(asked) :].strip("，；。！？ "):
        return None  # the answer would bring only the digits: too little to anchor it
    if found.re is _RANGE:
        number = "多长时间" if _TIME.search(found.group()) else "多少"
    else:  # the unit stays: `多少日`
        number = f"多少{found['unit']}"
    return f"{asked[: found.start()]}{number}{asked[found.end() :]}？"


def _zh_scope(sentence: str) -> str | None:
    head, found, rest = sentence.partition("包括")
    head = head.rstrip("，,")
    rest = rest.lstrip("：:")
    if not found or not 2 <= len(head) <= 40 or not rest or rest.startswith("其"):
        return None  # `特种设备包括其所用的材料`: its parts, not what it is
    return f"{head}包括哪些？"


def _zh_obligation(sentence: str) -> str | None:
    modal = _MODAL.search(sentence)
    if modal is None or not MIN_SUBJECT_CHARS <= modal.start() <= 50:
        return None
    if "除" in sentence[: modal.start()]:
        return None  # `除了应当…外，还应当…` is not asked by `除了应当做什么`
    return f"{sentence[: modal.start()]}{modal.group()}做什么？"


_ZH_RULES: list[tuple[str, Callable[[str], str | None]]] = [
    ("definition", _zh_definition),
    ("number", _zh_number),
    ("scope", _zh_scope),
    ("obligation", _zh_obligation),
]

# -- English -------------------------------------------------------------------------------

_EN_DEFINITION = re.compile(
    r"^(?P<the_term>the term\s+)?[\"“'‘](?P<term>[^\"”'’]{2,60})[\"”'’]\s+"
    r"(?P<verb>means|includes)\b",
    re.IGNORECASE,
)
_EN_PURPOSE = re.compile(r"^the purpose of (?P<what>[^,;]{3,80}?) (?:is|are) to\b", re.IGNORECASE)
# The subject: the words since the last comma or dash before the modal, as `the Secretary`.
_EN_OBLIGATION = re.compile(
    r"(?:^|[,;:—]\s*)(?P<subject>(?:the|each|an?|every|any|[A-Z][\w.]*)(?: [\w.'’-]+){0,7}?)"
    r" (?P<modal>shall|must|may) (?P<negation>not )?(?P<adverb>[a-z]+ly )?(?P<verb>[a-z]+)"
    r"(?: (?P<next>\w+))?"
)
# Verbs after `shall` that take no object worth asking for, or need their preposition.
_NO_OBJECT = frozenset(
    {"be", "become", "have", "also", "only", "take", "apply", "expire", "remain", "continue"}
    | {"terminate", "exceed", "comply", "consult", "cooperate", "coordinate", "include", "not"}
    | {"forthwith", "thereupon", "thereafter"}
)
_DETERMINERS = frozenset({"The", "Each", "A", "An", "Every", "Any", "Such", "This", "That", "All"})
_PREPOSITIONS = frozenset({"to", "with", "for", "on", "in", "into", "from", "by", "of", "at", "as"})
_PHRASAL = frozenset(
    {("apply", "to"), ("comply", "with"), ("consult", "with"), ("cooperate", "with")}
    | {("coordinate", "with"), ("rely", "on"), ("report", "to")}
)


def _en_definition(sentence: str) -> str | None:
    found = _EN_DEFINITION.match(sentence)
    if found is None:
        return None
    verb = "mean" if found["verb"].lower() == "means" else "include"
    the_term = "the term " if found["the_term"] else ""  # `term` anchors a one-word term
    return f'What does {the_term}"{found["term"]}" {verb}?'


def _en_purpose(sentence: str) -> str | None:
    found = _EN_PURPOSE.match(sentence)
    return f"What is the purpose of {found['what']}?" if found else None


def _en_obligation(sentence: str) -> str | None:
    found = _EN_OBLIGATION.search(sentence)
    if found is None:
        return None
    verb = found["verb"]
    if (verb, found["next"]) in _PHRASAL:
        verb = f"{verb} {found['next']}"  # `comply with`
    elif verb in _NO_OBJECT or found["next"] in _PREPOSITIONS:
        return None
    subject = found["subject"]
    if subject.split()[0].lower() in ("no", "nothing", "none") or (
        found["modal"] == "may" and not found["negation"]
    ):
        return None  # `No person may`, and a permission, are not obligations
    if subject.split()[0] in _DETERMINERS:
        subject = subject[0].lower() + subject[1:]
    negation = " not" if found["negation"] else ""
    return f"What {found['modal']} {subject}{negation} {found['adverb'] or ''}{verb}?"


_EN_RULES: list[tuple[str, Callable[[str], str | None]]] = [
    ("definition", _en_definition),
    ("purpose", _en_purpose),
    ("obligation", _en_obligation),
]
