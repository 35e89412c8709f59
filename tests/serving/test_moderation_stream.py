"""StreamScreen on its own: what a moderated stream sends for each model Delta, and bills."""

from __future__ import annotations

from feilun.core.protocols import Delta
from feilun.governance.lexicon import parse_lexicon
from feilun.governance.moderation import Moderator, Policy
from feilun.serving.gateway import Principal
from feilun.serving.moderation import Screening, StreamScreen

MODERATOR = Moderator(
    parse_lexicon("violence_obscenity gory violence\nviolence_obscenity 血腥暴力")
)
PRINCIPAL = Principal("ten_a", "a", "sk-a", None)


def screen(language: str = "en", policy: Policy | None = None) -> StreamScreen:
    screening = Screening(MODERATOR, policy or Policy(), language, PRINCIPAL)  # type: ignore[arg-type]
    return screening.stream(0)


def sent(s: StreamScreen, deltas: list[Delta]) -> list[tuple[str, str | None, int]]:
    out = [d for delta in deltas for d in s.pieces(delta)]
    return [(d.text, d.finish_reason, d.completion_tokens) for d in out]


def test_benign_pieces_pass_as_they_come_and_every_token_is_billed() -> None:
    s = screen()
    deltas = [Delta(text=t, completion_tokens=i) for i, t in enumerate(["Hel", "lo ", "you"], 1)]
    deltas.append(Delta(text="", completion_tokens=3, finish_reason="stop"))
    assert "".join(t for t, _, _ in sent(s, deltas)) == "Hello you"
    assert s.sent_tokens == 3 and s.stopped is None


def test_text_before_a_stop_in_the_last_piece_still_goes_out_unbilled_tail() -> None:
    s = screen()
    out = sent(
        s,
        [
            Delta(text="ok. ", completion_tokens=1),
            Delta(text="then gory violence", completion_tokens=2, finish_reason="stop"),
        ],
    )
    texts = [t for t, _, _ in out]
    assert texts[:2] == ["ok. ", "then "] and texts[-1].startswith("\n\nSorry")
    assert out[-1][1] == "content_filter"
    assert s.sent_tokens == 1  # the second piece was not sent whole: not billed
    assert s.screening.answers[0].category == "violence_obscenity"


def test_a_runtime_without_running_counts_is_billed_one_token_per_whole_piece() -> None:
    s = screen(language="zh")
    pieces = ["从前", "有血腥", "暴力", "的故事", "很长"]
    out = sent(s, [Delta(text=t) for t in pieces])
    texts = [t for t, _, _ in out]
    assert texts[0] == "从前" and "血腥" not in "".join(texts)
    assert texts[-1].startswith("\n\n抱歉") and s.sent_tokens == 1


def test_a_stream_ending_without_a_finish_flushes_what_was_held() -> None:
    s = screen()
    assert sent(s, [Delta(text="a gory", completion_tokens=1)]) == [("a ", None, 0)]
    assert s.pieces(None)[0].text == "gory" and s.sent_tokens == 1
