"""Synthetic grounded QA: passages, parsing of messy replies, the grounding filter, datasets."""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from feilun.core.errors import ConfigError, InputTooLong
from feilun.core.protocols import ChatModel, Completion, Delta, GenerationParams, Usage
from feilun.core.records import Document, Message
from feilun.data.datasets import read_rejected, read_rows
from feilun.data.passages import (
    MIN_PASSAGE_CHARS,
    Passage,
    check_answer,
    check_question,
    document_passages,
    ground_answer,
    snap_answer,
    split_passages,
    split_sentences,
    support,
)
from feilun.data.synth import REASONS, SynthParams, synthesize_dataset, synthesize_qa
from feilun.data.synth_model import TEMPLATES, parse_answer, parse_questions
from feilun.store.artifacts import ArtifactStore
from feilun.store.catalog import SqlCatalog
from feilun.store.database import open_database
from feilun.store.migrate import upgrade

DOCS = Path("../shared/data/industry/docs")
ZH_TEXT = (DOCS / "zh" / "城镇燃气管理条例(2016-02-06).md").read_text(encoding="utf-8")
EN_TEXT = (DOCS / "en" / "US-Code-Title49-Ch601-Pipeline-Safety.md").read_text(encoding="utf-8")
_SENTENCE = re.compile(r"[^。；.;\n]+[。；.;]?")
# "(b) Considerations" of 49 U.S.C. 60118: a lead-in and a list of items, one a sentence each.
_START = EN_TEXT.index("###### (b) Considerations")
_END = EN_TEXT.index("soil characteristics;", _START) + len("soil characteristics;")
PIPELINE = Passage(Document(text=EN_TEXT), _START, _END, EN_TEXT[_START:_END], "en")


class ReadingModel:
    """A ChatModel test double that reads the prompt: it asks questions about the passage's
    sentences in a messy list, and answers by quoting the sentence the question is about.

    `invent=True` answers with text that is in no passage. Sampling (temperature > 0) picks
    sentences with the call's seed, so outputs depend on the seed as a real model's do.
    """

    def __init__(self, invent: bool = False, too_long_over: int | None = None) -> None:
        self.invent = invent
        self.too_long_over = too_long_over
        self.prompts: list[str] = []

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        prompt = messages[-1].content
        self.prompts.append(prompt)
        if self.too_long_over is not None and len(prompt) > self.too_long_over:
            raise InputTooLong(f"prompt is {len(prompt)} chars", "shorten it")
        text = self._answer(prompt) if _is_answer_step(prompt) else self._ask(prompt, params)
        return Completion(text=text, finish_reason="stop", usage=Usage())

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        yield Delta(text=self.chat(messages, params).text, finish_reason="stop")

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return sum(len(m.content) for m in messages)

    def _ask(self, prompt: str, params: GenerationParams) -> str:
        passage = re.split(r"Text:\n|文字：\n", prompt, maxsplit=1)[1]
        passage = re.split(r"\n\nQuestions:|\n\n问题：", passage)[0]
        asked = re.search(r"write (\d+)|提出(\d+)", prompt)
        n = int(asked.group(1) or asked.group(2))
        sentences = [s.strip() for s in _SENTENCE.findall(passage) if len(s.strip()) > 12]
        if params.temperature > 0:
            random.Random(params.seed).shuffle(sentences)
        questions = [_question_about(s) for s in sentences[:n]]
        lines = ["Sure! Here are the questions:", ""]
        styles = ["1. **{}**", "2) Q: {}", "- {}", "Question 4: {}", "5. {}"]
        lines += [styles[i % len(styles)].format(q) for i, q in enumerate(questions)]
        return "\n".join(lines) + "\n\nI hope these help."

    def _answer(self, prompt: str) -> str:
        if self.invent:
            return "The answer is:\n\nBananas grow on the moon, as every farmer in Paris knows."
        passage = re.split(r"Text:\n|文字：\n", prompt, maxsplit=1)[1]
        passage = re.split(r"\n\nQuestion: |\n\n问题：", passage)[0]
        key = re.search(r"say about (.+?)\?|关于「(.+?)」", prompt)
        words = key.group(1) or key.group(2)
        quote = next((s for s in _SENTENCE.findall(passage) if words in s), "I cannot tell.")
        return f"The answer to the question is:\n\nAnswer: {quote.strip()}\n\nMore chatter."


def _is_answer_step(prompt: str) -> bool:
    return prompt.endswith(("answers the question.", "回答这个问题的句子。"))


def _question_about(sentence: str) -> str:
    if re.search(r"[\u4e00-\u9fff]", sentence):
        return f"关于「{sentence[:6]}」，文字怎么规定？"
    return f"What does the text say about {' '.join(sentence.split()[:4])}?"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[SqlCatalog, ArtifactStore]]:
    db = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(db)
    yield SqlCatalog(db), ArtifactStore(tmp_path / "artifacts")
    db.close()


def documents() -> list[Document]:
    return [
        Document(name="regs/gas.md", collection="regs", source="gas.md", text=ZH_TEXT),
        Document(name="regs/pipeline.md", collection="regs", source="p.md", text=EN_TEXT[:9000]),
    ]


def passage(text: str, language: str = "en") -> Passage:
    return Passage(Document(text=text), 0, len(text), text, language)


# -- passages ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [ZH_TEXT, EN_TEXT])
def test_passage_spans_point_into_the_text(text: str) -> None:
    spans = split_passages(text)
    assert len(spans) > 10
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert end <= next_start  # in order, never overlapping
    for start, end in spans:
        piece = text[start:end]
        assert piece == piece.strip() and len(piece) >= MIN_PASSAGE_CHARS
        # Over max_chars only by a heading kept with the text under it.
        body = re.sub(r"^(#+ .*\n+)+", "", piece)
        assert len(body) <= 800, piece[:80]


def test_chinese_articles_are_whole_and_start_passages() -> None:
    spans = split_passages(ZH_TEXT)
    # After the title block, a passage opens with a chapter heading or an article, and ends
    # where the next heading or article begins: no article is cut in two.
    for start, end in spans[1:]:
        assert ZH_TEXT[start] in "#第", ZH_TEXT[start : start + 20]
        assert ZH_TEXT[end:].lstrip()[:1] in ("#", "第", ""), ZH_TEXT[end : end + 20]
    lengths = [e - s for s, e in spans]
    assert sum(300 <= n <= 800 for n in lengths) / len(lengths) > 0.7, lengths


def test_short_articles_join_and_long_paragraphs_are_cut_at_sentence_ends() -> None:
    articles = "\n\n".join(
        f"第{n}条 本条规定燃气管理的第{n}项内容，须遵守。" for n in "一二三四五六七八九十"
    )
    spans = split_passages(articles, min_chars=60, max_chars=200)
    assert all(articles[s:e].startswith("第") for s, e in spans)
    assert len(spans) < 10  # several short articles to a passage
    long_text = "燃气经营者应当保障安全供气。" * 100  # one 1400-char paragraph
    pieces = split_passages(long_text, max_chars=300)
    assert "".join(long_text[s:e] for s, e in pieces) == long_text
    assert all(e - s <= 300 and long_text[s:e].endswith("。") for s, e in pieces)
    with pytest.raises(ConfigError, match="min_chars=900"):
        split_passages("x", min_chars=900, max_chars=800)


def test_page_numbers_come_from_page_starts() -> None:
    pages = ["Page one text about valves and meters. " * 12, "Page two on pipes. " * 25]
    text = "\n\n".join(pages)
    document = Document(text=text, meta={"page_starts": [0, len(pages[0]) + 2]})
    found = document_passages([document], min_chars=100, max_chars=300)
    assert (found[0].page, found[-1].page) == (1, 2)
    assert all(p.document.text[p.start : p.end] == p.text for p in found)
    assert document_passages([Document(text=text)], 100, 300)[0].page is None


def test_sentences_point_into_the_text_and_split_list_items() -> None:
    text = PIPELINE.text
    found = [text[start:end] for start, end in split_sentences(text)]
    assert found[0].startswith("In making a decision") and not found[0].startswith("#")
    assert [f[:3] for f in found[1:4]] == ["(1)", "(2)", "(3)"]  # a list item is a sentence
    assert all(f == f.strip() and f in text for f in found)
    assert split_sentences("The law says so. 第五条 国务院负责。县级以上负责。") == [
        (0, 16),
        (17, 27),
        (27, 34),
    ]


# -- parsing -------------------------------------------------------------------------------


def test_parse_questions_from_messy_replies() -> None:
    reply = (
        "Sure! Here are 3 questions:\n\n1. **What is gas?**\n2) Q: Who inspects meters?\n"
        "- Question 3: How often are pipes tested? (see above)\nA: every year\n"
        "问题1：燃气由谁管理？\n* 谁负责？\nThe text is about gas.\n1. What is gas?\n"
    )
    assert parse_questions(reply) == [
        "What is gas?",
        "Who inspects meters?",
        "How often are pipes tested?",
        "燃气由谁管理？",
        "谁负责？",
    ]
    assert parse_questions('```json\n[{"question": "What?"}, "Why?"]\n```') == ["What?", "Why?"]
    jsonl = '{"question": "Who?", "answer": "me"}\n{"Question": "Where?"}\nnoise'
    assert parse_questions(jsonl) == ["Who?", "Where?"]
    assert parse_questions("The answer to this question is:\n\nIt is fine.") == []
    assert parse_questions("") == []


def test_parse_answer_skips_lead_ins_and_chatter() -> None:
    assert parse_answer("The answer to the question is:\n\nGas is fuel.\n\nMore.") == "Gas is fuel."
    assert parse_answer("Answer: **Gas** is fuel.\nIt burns.") == "**Gas** is fuel.\nIt burns."
    assert parse_answer("答案：燃气是燃料。") == "燃气是燃料。"
    assert parse_answer("  \n\nThe answer is:") == ""


def test_questions_are_repaired() -> None:
    reply = (
        "(i) What is the purpose of the Committee?\n"
        '"Why is 1.1 used in the text?\n'
        "What is the nature of the material transported\n"
        "谁负责全国的燃气管理工作\n"
        "The text is a summary of the article.\n"
    )
    assert parse_questions(reply) == [
        "What is the purpose of the Committee?",
        "Why is 1.1 used in the text?",
        "What is the nature of the material transported?",
        "谁负责全国的燃气管理工作？",
    ]


def test_a_quoted_sentence_is_the_answer() -> None:
    reply = 'The sentence that answers the question is: "The Secretary may not exempt it." More.'
    assert parse_answer(reply) == "The Secretary may not exempt it."
    assert (
        parse_answer("The sentence in question is: “国务院建设主管部门负责”")
        == "国务院建设主管部门负责"
    )


# -- grounding -----------------------------------------------------------------------------


def test_the_filter_keeps_a_quoted_answer_and_rejects_an_invented_one() -> None:
    text = (
        "第五条 国务院建设主管部门负责全国的燃气管理工作。"
        "县级以上地方人民政府燃气管理部门负责本行政区域内的燃气管理工作。"
    )
    zh = passage(text, "zh")
    question = "谁负责全国的燃气管理工作？"
    assert check_question(question, zh, set()) is None
    assert check_answer(question, "国务院建设主管部门负责全国的燃气管理工作。", zh, 0.6) == (
        None,
        1.0,
    )
    reason, score = check_answer(question, "燃气由外星人统一管理和分配。", zh, 0.6)
    assert reason == "ungrounded" and score < 0.3
    en = passage("Each operator shall inspect every gas meter once a year and keep the records.")
    assert check_answer("Who inspects?", "Operators inspect meters on Mars daily.", en, 0.6)[0] == (
        "ungrounded"
    )
    assert support("every gas meter once a year", en.text) == 1.0
    assert support("meter", en.text) == 1.0 and support("volcano", en.text) == 0.0


@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("", "x", "empty_question"),
        ("The operator inspects gas meters.", "x", "not_a_question"),
        ("燃气表由谁检验？", "x", "wrong_language"),
        ("What is the text of the document about?", "x", "off_topic"),
        ("How do volcanoes erupt in Iceland?", "x", "off_topic"),
        (
            "Each operator shall inspect every gas meter once a year?",
            "x",
            "question_copies_passage",
        ),
        ("Who inspects every gas meter?", "", "empty_answer"),
        (
            "Who inspects every gas meter?",
            "Who inspects every gas meter?",
            "answer_repeats_question",
        ),
    ],
)
def test_each_rejection_has_its_reason(question: str, answer: str, reason: str) -> None:
    en = passage("Each operator shall inspect every gas meter once a year and keep the records.")
    found = check_question(question, en, set()) or check_answer(question, answer, en, 0.6)[0]
    assert found == reason and found in REASONS
    assert check_question("Who inspects every gas meter?", en, {"whoinspectseverygasmeter"}) == (
        "duplicate"
    )


def test_an_answer_snaps_to_the_sentence_it_points_at_on_a_real_passage() -> None:
    """Q and A as SmolLM2-135M wrote them on this passage of 49 U.S.C. 60118."""
    question = "What is the nature of the material transported?"
    answer = "It is about how corrosive and deteriorating the material is, and the pressure needed."
    reason, kept = ground_answer(question, answer, PIPELINE, 0.6)
    assert reason is None and kept.mode == "extractive" and kept.support == 1.0
    assert kept.span is not None
    assert kept.text == PIPELINE.text[kept.span[0] : kept.span[1]]
    assert kept.text.startswith("(2) the nature of the material the pipeline facility transports")
    # Its words are all in the passage, but from item (1): the question asked about item (2).
    elsewhere = "The nature of the material transported is the pipe and other equipment."
    assert support(elsewhere, PIPELINE.text) >= 0.6
    assert ground_answer(question, elsewhere, PIPELINE, 0.6)[0] == "unanchored"
    # One shared word is no anchor; an invented answer has none either.
    item = PIPELINE.text[kept.span[0] : kept.span[1]]
    assert snap_answer("What is Chapter 34?", item, PIPELINE) is None
    invented = "The material is moved by trucks at night across the border."
    assert ground_answer(question, invented, PIPELINE, 0.6)[0] == "ungrounded"


def test_a_chinese_answer_snaps_to_its_article() -> None:
    start = ZH_TEXT.index("第四条")
    text = ZH_TEXT[start : ZH_TEXT.index("第六条")].strip()
    zh = Passage(Document(text=ZH_TEXT), start, start + len(text), text, "zh")
    reason, kept = ground_answer(
        "谁负责全国的燃气管理工作？", "国务院建设部门主管这项工作。", zh, 0.6
    )
    assert reason is None and kept.mode == "extractive"
    assert kept.text == "第五条 国务院建设主管部门负责全国的燃气管理工作。"
    supported = "国务院建设主管部门负责全国的燃气管理工作。"
    reason, kept = ground_answer("谁负责全国的燃气管理工作？", supported, zh, 0.6)
    assert (reason, kept.mode, kept.text) == (None, "generated", supported)


# -- the run -------------------------------------------------------------------------------


def test_pairs_are_grounded_and_keep_their_source() -> None:
    model = ReadingModel()
    params = SynthParams(model="reader@1", writer="model", max_passages=None, per_chunk=2, seed=3)
    result = synthesize_qa(documents(), model, params)
    summary = result.summary()
    assert summary["passages"] == len(document_passages(documents())) > 30
    assert summary["kept"] == len(result.rows) > summary["passages"]
    assert summary["generated"] == summary["kept"] + sum(summary["rejected_by_reason"].values())
    for row in result.rows:
        question, answer = (m["content"] for m in row["messages"])
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        meta = row["meta"]
        start, end = meta["span"]
        source_text = ZH_TEXT if meta["language"] == "zh" else EN_TEXT
        assert answer in source_text[start:end]  # the quote lies inside its passage
        assert meta["template"] == TEMPLATES[meta["language"]].id
        assert meta["model"] == "reader@1" and meta["support"] >= 0.6 and meta["page"] is None
        assert meta["answer_mode"] == "generated"  # the reader quotes: its own words are kept
        assert meta["source"] in ("gas.md", "p.md") and question.strip()
    assert {r["meta"]["language"] for r in result.rows} == {"zh", "en"}


def test_zh_and_en_passages_use_their_own_template() -> None:
    model = ReadingModel()
    synthesize_qa(
        documents(), model, SynthParams(model="m", writer="model", max_passages=None, per_chunk=1)
    )
    asks = [p for p in model.prompts if not _is_answer_step(p)]
    zh_asks = [p for p in asks if p.startswith("阅读下面的文字")]
    en_asks = [p for p in asks if p.startswith("Read the text")]
    assert zh_asks and en_asks and len(zh_asks) + len(en_asks) == len(asks)
    assert all(re.search(r"[\u4e00-\u9fff]{8}", p.split("文字：\n")[1]) for p in zh_asks)
    assert not any(re.search(r"[\u4e00-\u9fff]", p) for p in en_asks)
    forced = ReadingModel()
    synthesize_qa(documents()[:1], forced, SynthParams(model="m", max_passages=2, language="en"))
    assert all(p.startswith(("Read the text", "Text:")) for p in forced.prompts)


def test_invented_answers_are_all_rejected() -> None:
    result = synthesize_qa(
        documents(),
        ReadingModel(invent=True),
        SynthParams(model="m", writer="model", max_passages=4),
    )
    assert result.rows == []
    assert result.summary()["rejected_by_reason"] == {"ungrounded": result.generated}
    assert all(r.reason.startswith("ungrounded: too little") for r in result.rejected)
    assert "Bananas grow on the moon" in result.rejected[0].item.text


def test_a_prompt_too_long_is_counted_and_the_run_goes_on() -> None:
    short = Document(name="s", text="Each operator shall inspect every gas meter once a year.")
    long = Document(name="l", text=EN_TEXT[:3000])
    model = ReadingModel(too_long_over=400)
    result = synthesize_qa(
        [long, short], model, SynthParams(model="m", writer="model", max_passages=None)
    )
    reasons = result.summary()["rejected_by_reason"]
    assert reasons["model_error"] >= 1 and result.rows  # the short document still gave pairs
    assert result.rows[-1]["meta"]["document_id"] == short.id


class ScriptedModel(ReadingModel):
    """Asks one question and answers it in its own words, as a small model does."""

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        is_answer = _is_answer_step(messages[-1].content)
        text = (
            "It is about how corrosive and deteriorating the material is, and the pressure."
            if is_answer
            else "1. What is the nature of the material transported"
        )
        return Completion(text=text, finish_reason="stop", usage=Usage())


def test_an_extractive_answer_is_the_passage_sentence_with_its_span() -> None:
    document = Document(name="p", text=PIPELINE.text)
    result = synthesize_qa(
        [document], ScriptedModel(), SynthParams(model="m", writer="model", per_chunk=1)
    )
    [row] = result.rows
    question, answer = (m["content"] for m in row["messages"])
    meta = row["meta"]
    assert question == "What is the nature of the material transported?"  # repaired
    assert (meta["answer_mode"], meta["support"]) == ("extractive", 1.0)
    start, end = meta["answer_span"]
    assert document.text[start:end] == answer and answer.startswith("(2) the nature")


def test_system_prompt_and_per_chunk() -> None:
    params = SynthParams(
        model="m", writer="model", max_passages=3, per_chunk=1, system_prompt="你是燃气专家。"
    )
    result = synthesize_qa(documents()[:1], ReadingModel(), params)
    per_passage = Counter(tuple(r["meta"]["span"]) for r in result.rows)
    assert result.rows and max(per_passage.values()) == 1  # per_chunk caps rows per passage
    assert all(
        r["messages"][0] == {"role": "system", "content": "你是燃气专家。"} for r in result.rows
    )
    with pytest.raises(ValueError, match="per_chunk"):
        SynthParams(model="m", per_chunk=0)


def test_saved_dataset_has_lineage_recipe_rejections_and_a_stable_hash(
    store: tuple[SqlCatalog, ArtifactStore],
) -> None:
    catalog, artifacts = store
    for document in documents():
        catalog.save(document)
    catalog.save(Document(name="other/x.md", collection="other", text="不在本集合" * 20))
    ids = sorted(d.id for d in catalog.find("document") if d.name.startswith("regs/"))
    opened: list[ChatModel] = []

    def open_model() -> ChatModel:
        opened.append(ReadingModel())
        return opened[-1]

    def run(seed: int) -> tuple[str, int]:
        params = SynthParams(
            model="reader@1", writer="model", max_passages=5, seed=seed, temperature=0.9
        )
        dataset, result = synthesize_dataset(catalog, artifacts, "regs", "qa", open_model, params)
        assert dataset.count == len(result.rows) and sorted(dataset.inputs) == ids
        return dataset.content_hash, dataset.version

    first, second, other = run(7), run(7), run(8)
    assert first[0] == second[0] and (first[1], second[1]) == (1, 2)  # same seed: same content
    assert other[0] != first[0]
    dataset = catalog.find("dataset", "qa", 1)[0]
    recipe = dataset.recipe
    assert (recipe["model"], recipe["seed"], recipe["per_chunk"]) == ("reader@1", 7, 3)
    assert recipe["collection"] == "regs" and set(recipe["templates"]) == {"qa-en-2", "qa-zh-2"}
    assert "{passage}" in recipe["templates"]["qa-zh-2"]["ask"]
    rows = read_rows(artifacts, dataset)
    assert rows and all(set(r) == {"id", "messages", "meta"} for r in rows)
    assert dataset.meta["operators"][0]["operator"] == "synth_qa:model"
    assert dataset.meta["rejected_count"] == len(read_rejected(artifacts, dataset))


def test_an_empty_collection_fails_before_the_model_is_opened(
    store: tuple[SqlCatalog, ArtifactStore],
) -> None:
    def never() -> ChatModel:
        raise AssertionError("the model must not be opened")

    with pytest.raises(Exception, match="has no documents") as raised:
        synthesize_dataset(*store, "nowhere", "qa", never, SynthParams(model="m"))
    assert "feilun data ingest" in str(raised.value)
    with pytest.raises(ConfigError, match="not allowed"):
        synthesize_dataset(*store, "regs", "bad name", never, SynthParams(model="m"))


def test_the_whole_path_runs_on_a_real_tiny_model() -> None:
    """A random tiny Llama writes junk: every candidate is rejected with a counted reason."""
    from feilun.models.runtimes.transformers import TransformersChatModel
    from feilun.models.tiny import build_tiny_model

    model = TransformersChatModel(*build_tiny_model("llama", seed=1, init_std=0.3), name="tiny")
    docs = [
        Document(name="a", text="第五条 国务院建设主管部门负责全国的燃气管理工作。" * 3),
        Document(name="b", text="The operator shall inspect every gas meter once a year. " * 3),
        Document(name="c", text="Pipes and valves need care. " * 32),  # over 512 tokens
    ]
    params = SynthParams(
        model="tiny@1", writer="model", max_passages=None, max_tokens=48, max_chars=900
    )
    first = synthesize_qa(docs, model, params)
    summary = first.summary()
    assert summary["passages"] == 3 and summary["model_calls"] >= 3
    assert summary["generated"] == summary["kept"] + sum(summary["rejected_by_reason"].values())
    assert set(summary["rejected_by_reason"]) <= set(REASONS) and summary["rejected_by_reason"]
    assert summary["rejected_by_reason"].get("model_error", 0) >= 1  # the long passages
    assert all(r["meta"]["support"] >= params.min_support for r in first.rows)
    again = synthesize_qa(docs, model, params)  # seeded, sampled asks included: same junk
    assert [(r.reason, r.item.text) for r in again.rejected] == [
        (r.reason, r.item.text) for r in first.rejected
    ]
