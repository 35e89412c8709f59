"""Rule-written QA: questions from regulation structure, exact-span answers, `--writer`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feilun.cli.main import app
from feilun.core.errors import ConfigError
from feilun.core.protocols import Completion, Delta, GenerationParams, Usage
from feilun.core.records import Document, Message
from feilun.data.passages import Passage, check_question, document_passages, ground_answer
from feilun.data.synth import SynthParams, synthesize_qa
from feilun.data.synth_rules import RULES, TEMPLATE_IDS, rule_questions

DOCS = Path("../shared/data/industry/docs")
GAS = "城镇燃气管理条例"
ZH_TEXT = (DOCS / "zh" / f"{GAS}(2016-02-06).md").read_text(encoding="utf-8")
EN_TEXT = (DOCS / "en" / "US-Code-Title49-Ch601-Pipeline-Safety.md").read_text(encoding="utf-8")
ARTICLES = (
    "第二条 本条例所称燃气，是指作为燃料使用并符合一定要求的气体燃料，包括天然气、液化石油气"
    "和人工煤气等。\n\n"
    "第九条 燃气发展规划的内容应当包括：燃气气源、燃气种类、燃气供应方式和规模等。\n\n"
    "第二十条 燃气经营者停业、歇业的，应当事先对其供气范围内的燃气用户的正常用气作出妥善安排，"
    "并在90个工作日前向所在地燃气管理部门报告。\n\n"
    "第四十五条 违反本条例规定，未取得燃气经营许可证从事燃气经营活动的，由燃气管理部门责令停止"
    "违法行为，处5万元以上50万元以下罚款。\n\n"
    "第二十八条 燃气用户及相关单位和个人不得有下列行为：\n"
    "（一）擅自操作公用燃气阀门；\n"
    "（二）将燃气管道作为负重支架或者接地引线；\n\n"
    "第五十三条 本条例下列用语的含义：\n\n"
    "(一)燃气燃烧器具，是指以燃气为燃料的燃烧器具，包括居民家庭和商业用户所使用的燃气灶、"
    "热水器等器具。\n"
)
STATUTE = (
    '(4) The term "gas" means natural gas, flammable gas, or toxic or corrosive gas.\n'
    '(5) "hazardous liquid" means petroleum or a petroleum product.\n'
    "(b) Except as provided in this section, the Secretary shall prescribe minimum safety "
    "standards for pipeline transportation and for pipeline facilities.\n"
    "The operator must comply with the standards of the Secretary.\n"
    "No person may operate a pipeline facility without a plan.\n"
)


def passage(text: str, language: str, title: str = "") -> Passage:
    return Passage(Document(name="t.md", title=title, text=text), 0, len(text), text, language)


def gas_documents() -> list[Document]:
    return [Document(name="regs/gas.md", collection="regs", title=GAS, text=ZH_TEXT)]


def test_chinese_articles_give_questions_answered_by_their_sentence() -> None:
    zh = passage(ARTICLES, "zh", title=GAS)
    asked = {q.question: (q.rule, zh.text[q.start : q.end]) for q in rule_questions(zh)}
    assert asked == {
        f"《{GAS}》所称燃气是指什么？": (
            "definition",
            "本条例所称燃气，是指作为燃料使用并符合一定要求的气体燃料，包括天然气、液化石油气"
            "和人工煤气等。",
        ),
        "燃气发展规划的内容应当包括哪些？": (
            "scope",
            "燃气发展规划的内容应当包括：燃气气源、燃气种类、燃气供应方式和规模等。",
        ),
        # `多少个工作日前` would leave the answer only `90` to bring: too little to anchor.
        "燃气经营者停业、歇业的，应当做什么？": (
            "obligation",
            "燃气经营者停业、歇业的，应当事先对其供气范围内的燃气用户的正常用气作出妥善安排，"
            "并在90个工作日前向所在地燃气管理部门报告。",
        ),
        f"违反《{GAS}》规定，未取得燃气经营许可证从事燃气经营活动的，由燃气管理部门责令停止"
        "违法行为，处多少罚款？": (
            "number",
            "违反本条例规定，未取得燃气经营许可证从事燃气经营活动的，由燃气管理部门责令停止"
            "违法行为，处5万元以上50万元以下罚款。",
        ),
        "燃气燃烧器具是指什么？": (
            "definition",
            "燃气燃烧器具，是指以燃气为燃料的燃烧器具，包括居民家庭和商业用户所使用的燃气灶、"
            "热水器等器具。",
        ),
    }  # article numbers and list labels are not part of the answer; a list's lead-in asks nothing
    grounded = {}
    for question, (_, answer) in asked.items():
        assert check_question(question, zh, set()) is None
        grounded[question] = ground_answer(question, answer, zh, 0.6)[0]
    # The rules' questions meet the same checks as a model's: the title's words are not in the
    # sentence, and `燃气` alone is too little to anchor the answer to it.
    assert grounded.pop(f"《{GAS}》所称燃气是指什么？") == "unanchored"
    assert set(grounded.values()) == {None}
    # Without a title of that kind, `本条例` stays as the text has it.
    untitled = rule_questions(passage(ARTICLES, "zh"))
    assert untitled[0].question == "本条例所称燃气是指什么？"


def test_english_definitions_and_obligations() -> None:
    en = passage(STATUTE, "en")
    assert [(q.rule, q.question) for q in rule_questions(en)] == [
        ("definition", 'What does the term "gas" mean?'),
        ("definition", 'What does "hazardous liquid" mean?'),
        ("obligation", "What shall the Secretary prescribe?"),
        ("obligation", "What must the operator comply with?"),
    ]  # `No person may` forbids: it asks nothing that `What may … do` would answer


def test_rules_alone_keep_grounded_pairs_from_a_chinese_regulation() -> None:
    params = SynthParams(model=None, writer="rules", max_passages=None, per_chunk=20)
    result = synthesize_qa(gas_documents(), None, params)
    summary = result.summary()
    assert summary["model_calls"] == 0 and summary["kept_by_writer"] == {"rules": len(result.rows)}
    assert len(result.rows) >= 1.5 * summary["passages"]  # measured: 48 from 25
    assert summary["generated"] == summary["kept"] + sum(summary["rejected_by_reason"].values())
    for row in result.rows:
        question, answer = (m["content"] for m in row["messages"])
        meta = row["meta"]
        assert ZH_TEXT[slice(*meta["answer_span"])] == answer  # an exact span of the document
        start, end = meta["span"]
        assert start <= meta["answer_span"][0] < meta["answer_span"][1] <= end
        assert (meta["writer"], meta["model"], meta["answer_mode"]) == ("rules", None, "extractive")
        assert meta["template"] == TEMPLATE_IDS["zh"] and meta["rule"] in RULES["zh"]
        assert question.endswith("？") and "本条例" not in question
    by_rule = Counter(r["meta"]["rule"] for r in result.rows)
    assert set(by_rule) == set(RULES["zh"])
    questions = {r["messages"][0]["content"]: r["messages"][1]["content"] for r in result.rows}
    assert questions["燃气设施是指什么？"].startswith("燃气设施，是指人工煤气生产厂、")
    hours = (
        "管道燃气经营者因施工、检修等原因需要临时调整供气量或者暂停供气的，"
        "应当将作业时间和影响区域提前"
    )
    assert questions[f"{hours}多少小时予以公告或者书面通知燃气用户？"].startswith(f"{hours}48小时")
    assert len(questions) == len(result.rows)  # a repeated question is rejected as a duplicate


def test_the_seed_decides_the_pairs() -> None:
    def run(seed: int) -> list[list[dict[str, str]]]:
        params = SynthParams(model=None, writer="rules", max_passages=6, per_chunk=1, seed=seed)
        return [row["messages"] for row in synthesize_qa(gas_documents(), None, params).rows]

    assert run(4) == run(4) and run(4) != run(5)


class EnglishOnlyModel:
    """Reads English passages as SmolLM2-135M does well enough, and writes no Chinese question.

    On 49 U.S.C. 60118(b) it asks and answers as SmolLM2 did (its reply is in test_synth.py).
    """

    def __init__(self) -> None:
        self.calls = 0

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        self.calls += 1
        prompt = messages[-1].content
        if prompt.startswith("阅读") or prompt.startswith("文字"):
            text = "这是一段文字。"
        elif prompt.endswith("answers the question."):
            text = "It is about how corrosive and deteriorating the material is, and the pressure."
        else:
            text = "1. What is the nature of the material transported"
        return Completion(text=text, finish_reason="stop", usage=Usage())

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        yield Delta(text=self.chat(messages, params).text, finish_reason="stop")

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content) for m in messages)


def test_auto_falls_back_to_the_rules_per_passage() -> None:
    start = EN_TEXT.index("###### (b) Considerations")
    end = EN_TEXT.index("soil characteristics;", start) + len("soil characteristics;")
    start_zh = ZH_TEXT.index("第二十条")
    documents = [
        Document(name="pipeline.md", text=EN_TEXT[start:end]),
        Document(name="gas.md", title=GAS, text=ZH_TEXT[start_zh : start_zh + 600]),
    ]
    model = EnglishOnlyModel()
    params = SynthParams(model="english@1", max_passages=None, per_chunk=2, attempts=2)
    result = synthesize_qa(documents, model, params)
    writers: dict[tuple[str, int], set[str]] = {}
    for row in result.rows:
        writers.setdefault((row["meta"]["source"], row["meta"]["span"][0]), set())
        writers[row["meta"]["source"], row["meta"]["span"][0]].add(row["meta"]["writer"])
    # The model's pair stands alone on its passage; each Chinese one, where it failed, has rules.
    gas = document_passages(documents[1:])
    assert len(gas) == 2 and writers == {
        ("pipeline.md", 0): {"model"},
        **{("gas.md", p.start): {"rules"} for p in gas},
    }
    summary = result.summary()
    assert summary["kept_by_writer"] == {"model": 1, "rules": 4}  # per_chunk=2 a passage
    assert summary["rejected_by_writer"]["model"]["unparsed"] == 4  # two asks on each
    assert summary["model_calls"] == model.calls
    reports = {r.operator: r for r in result.reports()}
    assert set(reports) == {"synth_qa:model", "synth_qa:rules"}
    assert reports["synth_qa:rules"].count_out == 4
    assert sum(r.count_in for r in reports.values()) == summary["generated"]
    filed = Counter(r.operator for r in result.rejected)  # under the report that counts it
    assert dict(filed) == {
        name: sum(report.removed_by_reason.values())
        for name, report in reports.items()
        if report.removed_by_reason
    }
    model_only = synthesize_qa(documents, model, params.model_copy(update={"writer": "model"}))
    assert {r["meta"]["writer"] for r in model_only.rows} == {"model"}
    calls = model.calls
    rules_only = synthesize_qa(documents, model, params.model_copy(update={"writer": "rules"}))
    assert model.calls == calls and rules_only.summary()["kept_by_writer"]["rules"] >= 5
    with pytest.raises(ValueError, match="needs a ChatModel"):
        synthesize_qa(documents, None, params)
    with pytest.raises(ValueError, match="writer='auto' needs a model"):
        SynthParams(model=None)


# -- the command ---------------------------------------------------------------------------


def invoke(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def workspace(tiny_workspace: Path) -> dict[str, str]:
    """The tiny random Llama as `tiny`, and a collection `laws` of two regulation texts."""
    from feilun.app.workspace import opened

    env = {"FEILUN_WORKSPACE": str(tiny_workspace)}
    with opened(None, env) as ws:
        ws.catalog.save(Document(name="gas.md", collection="laws", title=GAS, text=ARTICLES))
        ws.catalog.save(Document(name="pipe.md", collection="laws", text=STATUTE))
    return env


def test_the_command_counts_pairs_per_writer(workspace: dict[str, str]) -> None:
    base = ("data", "synth-qa", "laws", "-d", "laws-qa", "--per-chunk", "5")
    stdout = invoke(workspace, *base, "--model", "tiny")  # auto: the random model writes junk
    assert "synth-qa laws with tiny@1 + rules" in stdout
    assert "kept by model" in stdout and "kept by rules" in stdout
    auto = json.loads(invoke(workspace, *base, "--model", "tiny", "--json"))
    assert auto["kept_by_writer"] == {"model": 0, "rules": 8}
    assert set(auto["rejected_by_writer"]) == {"model", "rules"}
    operators = [o["operator"] for o in auto["dataset"]["meta"]["operators"]]
    assert operators == ["synth_qa:model", "synth_qa:rules"]

    rules = json.loads(invoke(workspace, *base, "--writer", "rules", "--json"))
    assert rules["model_calls"] == 0 and rules["kept_by_writer"] == {"rules": 8}
    assert rules["dataset"]["recipe"]["model"] is None
    assert rules["dataset"]["recipe"]["description"] == "synthetic QA by rules, seed 0"
    with pytest.raises(ConfigError, match="not used by --writer rules"):
        args = [*base, "--writer", "rules", "--model", "tiny"]
        CliRunner().invoke(app, args, env=workspace, catch_exceptions=False)


@pytest.mark.slow
def test_packaged_smollm2_in_auto_gives_chinese_pairs(env: dict[str, str]) -> None:
    """SmolLM2-135M writes no usable Chinese question: auto keeps the rules' pairs instead."""
    from feilun.app.workspace import opened
    from feilun.models.packaged import SMOLLM2

    if SMOLLM2.locate() is None:
        pytest.skip(f"{SMOLLM2.name} is not installed ({SMOLLM2.install_hint})")
    invoke(env, "init")
    with opened(None, env) as ws:
        model = ws.models.open(ws.models.resolve(SMOLLM2.name).ref)
    documents = [Document(name="gas.md", title=GAS, text=ARTICLES)]
    params = SynthParams(model="smollm2", max_passages=None, attempts=1, max_tokens=64)
    result = synthesize_qa(documents, model, params)
    assert result.model_calls >= 1 and result.kept_by_writer["rules"] >= 2
    for row in result.rows:
        answer = row["messages"][-1]["content"]
        if row["meta"]["writer"] == "rules":
            assert ARTICLES[slice(*row["meta"]["answer_span"])] == answer
