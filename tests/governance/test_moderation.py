from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from feilun.core.blocking import run_nonblocking
from feilun.core.errors import ConfigError
from feilun.governance.lexicon import (
    KeywordMatcher,
    Lexicon,
    default_lexicon,
    parse_lexicon,
    read_lexicon,
    write_lexicon,
)
from feilun.governance.moderation import (
    Moderator,
    Policy,
    Verdict,
    detect_language,
    load_policy,
)
from feilun.governance.taxonomy import GROUPS, RISKS, resolve_category

RECIPES = Path(__file__).parents[2] / "recipes" / "governance"
LEXICON = """
# a comment
terrorism_extremism 制作炸弹
A.1.4 make a bomb
personal_information 身份证号
violence_obscenity ass
allow 防止制作炸弹
"""


def test_taxonomy_has_5_groups_31_risks_with_unique_ids() -> None:
    assert len(GROUPS) == 5 and len(RISKS) == 31
    assert len({r.id for r in RISKS}) == 31 and len({r.code for r in RISKS}) == 31
    assert [sum(r.group == g.id for r in RISKS) for g in GROUPS] == [8, 9, 5, 7, 2]
    assert resolve_category("A.1.4") == ("terrorism_extremism",)
    assert len(resolve_category("discrimination")) == 9


def test_lexicon_malformed_lines_name_the_line() -> None:
    with pytest.raises(ConfigError, match=r"x.txt:3: expected `<category> <term>`"):
        parse_lexicon("# c\nterrorism_extremism 炸弹\n炸弹\n", source="x.txt")
    with pytest.raises(
        ConfigError, match=r"x.txt:1: unknown category 'bombs'.*terrorism_extremism"
    ):
        parse_lexicon("bombs 炸弹", source="x.txt")


def test_lexicon_round_trips_through_a_file(tmp_path: Path) -> None:
    lexicon = parse_lexicon(LEXICON)
    write_lexicon(lexicon, tmp_path / "l.txt")
    assert read_lexicon(tmp_path / "l.txt").counts() == lexicon.counts()
    assert lexicon.counts()["terrorism_extremism"] == 2  # the code A.1.4 resolved to the id


def test_matching_chinese_without_spaces_english_any_case_whole_words() -> None:
    matcher = KeywordMatcher(parse_lexicon(LEXICON))
    found = matcher.find(
        "教我制作炸弹。How to MAKE A BOMB? a class, an ass，ｍａｋｅ　ａ　ｂｏｍｂ"
    )
    assert [(m.term, m.category) for m in found] == [
        ("制作炸弹", "terrorism_extremism"),
        ("make a bomb", "terrorism_extremism"),
        ("ass", "violence_obscenity"),
        ("make a bomb", "terrorism_extremism"),  # full-width letters fold to ASCII
    ]
    text = "教我制作炸弹。"
    assert text[found[0].start : found[0].end] == "制作炸弹"
    assert matcher.find("如何防止制作炸弹的知识传播") == []  # inside an allowed term


def test_matcher_over_10k_terms_finds_each_planted_term() -> None:
    terms = [f"词{i:05d}项" for i in range(12_000)]
    lexicon = Lexicon(tuple(parse_lexicon(f"other_prohibited {t}").entries[0] for t in terms))
    matcher = KeywordMatcher(lexicon)
    text = "正文" + "无关内容".join(terms[::1000]) + "结尾"
    assert [m.term for m in matcher.find(text)] == terms[::1000]


def test_policy_actions_and_verdicts() -> None:
    moderator = Moderator(parse_lexicon(LEXICON))
    policy = Policy(categories={"core_values": "flag", "A.1.4": "block", "rights": "mask"})
    assert moderator.check("怎么制作炸弹", policy).decision == "block"
    masked = moderator.check("我的身份证号是多少", policy)
    assert (masked.decision, masked.text, masked.is_masked) == ("allow", "我的****是多少", True)
    flagged = moderator.check("what an ass", policy)
    assert (flagged.decision, flagged.category, flagged.layer) == (
        "flag",
        "violence_obscenity",
        "lexicon",
    )
    refused = moderator.check("How do I make a bomb?")  # the default policy refuses
    assert refused.decision == "refuse" and refused.refusal is not None
    assert refused.refusal.startswith("Sorry") and refused.hits[0].start == 9
    assert moderator.check("如何制作炸弹？").refusal.startswith("抱歉")  # type: ignore[union-attr]
    assert moderator.check("请介绍一下北京的历史").decision == "allow"


def test_empty_text_is_allowed() -> None:
    verdict = Moderator().check("")
    assert (verdict.decision, verdict.hits) == ("allow", ())
    assert Moderator().check("   \n").decision == "allow"


def test_policy_with_unknown_category_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown category 'violence'.*violence_obscenity"):
        Policy(categories={"violence": "block"})


def test_language_detection() -> None:
    assert detect_language("请把这句话翻译成英文：good morning") == "zh"
    assert detect_language("How do I say 你好 politely in a business email?") == "en"


def test_shipped_policies_and_lexicon_load() -> None:
    for path in sorted(RECIPES.glob("*.yaml")):
        load_policy(path).actions()
    lexicon = default_lexicon()
    assert len(lexicon) > 50 and "terrorism_extremism" in lexicon.counts()


def test_bad_policy_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("default: refuse\ncategories: {secession: explode}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"categories.secession='explode'"):
        load_policy(path)


def test_json_policy_files_and_non_mappings(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"default": "flag", "categories": {"A.4": "mask"}}', encoding="utf-8")
    actions = load_policy(path).actions()
    assert actions["privacy_rights"] == "mask" and actions["secession"] == "flag"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_policy(path)


def test_risk_beats_group_beats_default() -> None:
    policy = Policy(default="flag", categories={"A.2.5": "block", "discrimination": "refuse"})
    actions = policy.actions()
    assert actions["gender_discrimination"] == "block"
    assert actions["age_discrimination"] == "refuse" and actions["subversion"] == "flag"


def test_the_docs_taxonomy_table_lists_every_risk() -> None:
    page = (Path(__file__).parents[2] / "docs" / "governance.md").read_text(encoding="utf-8")
    for group in GROUPS:
        row = next(line for line in page.splitlines() if line.startswith(f"| {group.code} "))
        ids = [r.id for r in RISKS if r.group == group.id]
        assert row.count("`") == 2 * (len(ids) + 1) and all(f"`{i}`" in row for i in ids)


class _ThreadRecordingJudge:
    """A judge that calls everything unsafe and notes the thread it ran on."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def predict(self, text: str, language: str | None = None) -> tuple[str | None, float]:
        self.threads.append(threading.current_thread())
        return "other_prohibited", 0.99


def test_the_judge_checks_prompts_off_the_event_loop_and_never_answers() -> None:
    judge = _ThreadRecordingJudge()
    moderator = Moderator(judge=judge)

    def check_prompt(text: str) -> Verdict:
        return moderator.check(text, is_prompt=True)

    async def main() -> tuple[threading.Thread, Verdict]:
        return threading.current_thread(), await run_nonblocking(check_prompt, "hello there")

    loop_thread, verdict = anyio.run(main)
    assert (verdict.decision, verdict.layer) == ("refuse", "judge")
    assert judge.threads and loop_thread not in judge.threads  # moved to a worker thread
    assert moderator.check("hello there").decision == "allow"  # an answer: no judge
    assert moderator.check("hello there", Policy(judge=False), is_prompt=True).decision == "allow"
    assert len(judge.threads) == 1
