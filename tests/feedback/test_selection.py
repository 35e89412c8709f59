"""build_candidates on its own: which ratings become which rows (no database)."""

from __future__ import annotations

from typing import Any

from feilun.feedback.curation import Interaction, build_candidates, messages_of
from feilun.feedback.rules import CurationRules

RULES = CurationRules.model_validate({"eval": {"share": 0}})


def _said(answer: str, rating: int, scale: str = "stars", **fields: Any) -> Interaction:
    values: dict[str, Any] = {
        "trace_id": f"trc_{answer}",
        "tenant_id": "ten_a",
        "model": "tiny@1",
        "messages": (("user", "How often is a meter tested?"),),
        "answer": answer,
        "feedback_id": f"fbk_{answer}",
        "rating": rating,
        "scale": scale,
        "correction": None,
    }
    return Interaction(**{**values, **fields})


def test_stars_read_as_votes_by_the_rules() -> None:
    out = build_candidates([_said("ten", 4), _said("three", 3), _said("fifty", 2)], RULES)
    assert [r["messages"][-1]["content"] for r in out.rows["sft"]] == ["ten"]
    (pair,) = out.rows["preference"]
    assert (pair["chosen"], pair["rejected"], pair["meta"]["kind"]) == ("ten", "fifty", "vote_pair")
    assert pair["meta"]["feedback_ids"] == ["fbk_ten", "fbk_fifty"]
    assert out.skipped == {"neutral_rating": 1}

    strict = CurationRules.model_validate({"votes": {"up_min_stars": 5}, "eval": {"share": 0}})
    assert build_candidates([_said("ten", 4)], strict).rows["sft"] == []


def test_rules_switch_sources_off_and_multi_turn_prompts_give_no_pairs() -> None:
    rules = CurationRules.model_validate(
        {
            "sft": {"use_upvotes": False},
            "preference": {"use_vote_pairs": False},
            "eval": {"share": 0},
        }
    )
    out = build_candidates([_said("ten", 1, "thumbs"), _said("fifty", -1, "thumbs")], rules)
    assert out.rows == {"sft": [], "preference": [], "eval": []}
    assert out.skipped == {"upvotes_off": 1}

    turns = (("user", "Hi"), ("assistant", "Hello."), ("user", "How often is a meter tested?"))
    corrected = _said("fifty", -1, "thumbs", messages=turns, correction="Every ten years.")
    out = build_candidates([corrected], RULES)
    assert [m["role"] for m in out.rows["sft"][0]["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert out.rows["preference"] == [] and out.skipped == {"multi_turn_preference": 1}


def test_every_corrected_down_vote_is_held_out_at_share_one() -> None:
    rules = CurationRules.model_validate({"eval": {"share": 1}})
    wrong = _said("fifty", -1, "thumbs", correction="Every ten years.")
    right = _said("ten", 1, "thumbs")
    out = build_candidates([wrong, right], rules)
    assert out.rows["sft"] == [] and out.rows["preference"] == []
    (item,) = out.rows["eval"]
    assert (item["question"], item["answers"]) == (
        "How often is a meter tested?",
        ["Every ten years."],
    )
    assert out.skipped == {"held_out_for_eval": 1}
    # A question trained on before is never held out: the gate would test what was seen.
    out = build_candidates([wrong, right], rules, {"How often is a meter tested?"})
    assert out.rows["eval"] == [] and len(out.rows["sft"]) == 2


def test_requests_are_read_as_conversations() -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]}
    assert messages_of(parts) == (("user", "Hi"),)
    assert messages_of({"prompt": ["Once upon"]}) == (("user", "Once upon"),)
    tool = {"messages": [{"role": "tool", "content": "{}"}, {"role": "user", "content": "Hi"}]}
    assert messages_of(tool) is None and messages_of({"input": "embed me"}) is None
