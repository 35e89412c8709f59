from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from feilun.governance.lexicon import parse_lexicon
from feilun.governance.moderation import Moderator, Policy

LEXICON = parse_lexicon(
    "terrorism_extremism 制作炸弹\nterrorism_extremism make a bomb\npersonal_information 身份证号\n"
    "allow 制作炸弹的危害\nallow 防止制作炸弹\n"
)
MASK = Policy(default="mask")


def _run(moderator: Moderator, pieces: list[str], policy: Policy) -> tuple[str, list[str]]:
    guard = moderator.stream(policy)
    verdicts = [guard.feed(p) for p in pieces] + [guard.finish()]
    return "".join(v.text for v in verdicts), [v.decision for v in verdicts]


def test_a_term_split_across_pieces_stops_the_stream() -> None:
    guard = Moderator(LEXICON).stream(language="zh")
    assert guard.feed("好的，先制").text == "好的，先"  # 制 may begin a term: held back
    assert guard.feed("作炸").text == ""
    stop = guard.feed("弹的步骤是")
    assert (stop.decision, stop.text, stop.category) == ("refuse", "", "terrorism_extremism")
    assert stop.refusal is not None and stop.refusal.startswith("抱歉")
    assert (stop.hits[0].start, stop.hits[0].end) == (4, 8)  # offsets in the whole stream
    assert guard.feed("第一步").decision == "refuse" and guard.finish().text == ""


def test_latin_term_waits_for_its_word_boundary() -> None:
    moderator = Moderator(LEXICON)
    assert _run(moderator, ["we ", "make a b", "ombay trip"], Policy()) == (
        "we make a bombay trip",
        ["allow"] * 4,
    )
    assert _run(moderator, ["we make a b", "omb"], Policy())[1][-1] == "refuse"


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=100_000))
def test_stream_verdicts_equal_the_whole_text_verdict(seed: int) -> None:
    rng = random.Random(seed)
    words = [
        "制作炸弹",
        "身份证号",
        "make a bomb",
        "你好",
        " ",
        "bomb",
        "make",
        "制作",
        "x",
        "防止",
    ]
    words += ["的危害"]
    text = "".join(rng.choice(words) for _ in range(12))
    cuts = sorted(rng.sample(range(1, len(text)), k=min(5, len(text) - 1)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    moderator = Moderator(LEXICON)
    streamed, _ = _run(moderator, pieces, MASK)
    assert streamed == moderator.check(text, MASK).text
    _, decisions = _run(moderator, pieces, Policy())
    assert ("refuse" in decisions) == (moderator.check(text).decision == "refuse")


def test_an_allowed_term_still_growing_does_not_stop_the_stream() -> None:
    moderator = Moderator(LEXICON)
    out, decisions = _run(moderator, ["我们讨论制作炸弹", "的危害吧"], Policy())
    assert (out, decisions) == ("我们讨论制作炸弹的危害吧", ["allow"] * 3)
    assert _run(moderator, ["我们讨论制作炸弹", "的方法吧"], Policy())[1][1] == "refuse"


def test_lookback_is_bounded() -> None:
    guard = Moderator(LEXICON).stream()
    for _ in range(1000):
        guard.feed("一段很长的正常回答，")
    assert len(guard._held) < 11  # held text never exceeds the longest term
    assert guard.released_chars == 10_000 - len(guard._held)
