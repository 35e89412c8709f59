"""curate_feedback over real traces and feedback, on SQLite and PostgreSQL.

Checked: PII in a correction is masked, duplicates (of each other and of a previous version)
are dropped, every row names its trace and feedback (row meta and manifest inputs), eval
items never reach the training rows, unsafe rows are dropped, rows read as the training
recipes and the QA evaluation read them, and nothing new gives a reason instead of a version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feilun.app.curation import curate_feedback
from feilun.data.datasets import read_rows, resolve_dataset
from feilun.feedback.curation import row_question
from feilun.models.tiny import CHAT_TEMPLATE, build_tiny_tokenizer
from feilun.store.schema import traces
from feilun.training.collate import tokenize_chat_rows, tokenize_preference_rows

from .conftest import Shop

RULES = Path(__file__).parents[2] / "recipes" / "flywheel" / "curate.yaml"
ID_CARD = "11010519491231002X"  # a valid resident ID number (region, date, check digit)
PHONE = "13812345678"


def _rows(shop: Shop, ref: str | None) -> list[dict[str, Any]]:
    assert ref is not None
    ws = shop.workspace
    return read_rows(ws.artifacts, resolve_dataset(ws.catalog, ref))


def test_curation_masks_dedups_keeps_lineage_and_holds_eval_items_out(shop: Shop) -> None:
    # Held out or not is a stable draw per prompt: eight corrected down-votes land on both sides.
    corrected = {}
    for n in range(8):
        trace = shop.trace(f"第{n}号调压站的巡检周期是多久？", "每年一次。")
        answer = f"第{n}号调压站每月巡检一次，值班电话{PHONE}，负责人身份证号{ID_CARD}。"
        corrected[shop.rate(trace, "down", answer).id] = trace
    up_a = shop.trace("燃气泄漏时应该怎么办？", "立即关闭阀门，开窗通风，不要开关电器。")
    up_b = shop.trace("燃气泄漏时应该怎么办？", "立即关闭阀门，开窗通风，不要开关电器。")
    first, second = shop.rate(up_a, "up"), shop.rate(up_b, 5)

    result = curate_feedback(shop.workspace, RULES, "gas")

    assert result.reason is None, result.reason
    sft, pref, items = (
        _rows(shop, ref)
        for ref in (result.sft_dataset, result.preference_dataset, result.eval_dataset)
    )
    assert result.counts["sft"] == len(sft) and result.counts["eval_items"] == len(items)
    assert items and sft, result.counts
    # PII: no ID number or phone is left anywhere; the masks stand in their place.
    everything = repr([sft, pref, items])
    assert ID_CARD not in everything and PHONE not in everything
    assert "[身份证号]" in everything and "[手机号]" in everything
    # The second identical up-voted answer is an exact duplicate of the first.
    assert result.counts["removed_exact_duplicate"] == 1
    upvoted = [r for r in sft if r["meta"]["kind"] == "upvote"]
    assert [r["meta"]["feedback_ids"] for r in upvoted] == [[first.id]]
    assert second.id not in everything
    # Eval items never ask what a training row asks.
    eval_questions = {row_question(r) for r in items}
    assert not eval_questions & {row_question(r) for r in sft + pref}
    assert len(items) + sum(r["meta"]["kind"] == "correction" for r in sft) == len(corrected)
    # Lineage: each row names its trace and feedback, and so does the manifest.
    for row in sft + pref + items:
        for feedback_id in row["meta"]["feedback_ids"]:
            if feedback_id in corrected:
                assert corrected[feedback_id] in row["meta"]["trace_ids"]
    manifest = resolve_dataset(shop.workspace.catalog, result.sft_dataset or "")
    assert {up_a, first.id} <= set(manifest.inputs)
    assert manifest.meta["removed_by_reason"]["exact_duplicate"] == 1


def test_rows_have_the_shapes_training_and_evaluation_read(shop: Shop, tmp_path: Path) -> None:
    from feilun.evaluation.items import load_qa

    trace = shop.trace("What is the test pressure of a service line?", "10 kPa.")
    shop.rate(trace, 1, "The test pressure is 1.5 times the working pressure.")
    result = curate_feedback(shop.workspace, RULES, "lines", overrides=["eval.share=1"])
    (item,) = _rows(shop, result.eval_dataset)
    assert result.sft_dataset is None and result.preference_dataset is None
    path = tmp_path / "items.jsonl"
    path.write_text(json.dumps(item) + "\n", encoding="utf-8")
    (loaded,) = load_qa(path).items
    assert loaded.question == "What is the test pressure of a service line?"
    assert loaded.answers == ("The test pressure is 1.5 times the working pressure.",)

    trace = shop.trace("Who inspects meters?", "Nobody.", system="You are the gas utility bot.")
    shop.rate(trace, "down", "Certified meter technicians, every 5 years.")
    result = curate_feedback(shop.workspace, RULES, "lines", overrides=["eval.share=0"])
    (row,) = _rows(shop, result.sft_dataset)
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][-1]["content"] == "Certified meter technicians, every 5 years."
    (pair,) = _rows(shop, result.preference_dataset)
    assert pair["prompt"] == "Who inspects meters?"
    assert (pair["chosen"], pair["rejected"]) == (row["messages"][-1]["content"], "Nobody.")
    # What the sft_lora and dpo_lora recipes make of them: every row kept, none malformed.
    tokenizer = build_tiny_tokenizer()
    _, stats = tokenize_chat_rows([row], tokenizer, CHAT_TEMPLATE, 512, "skip")
    assert (stats.kept, dict(stats.skipped)) == (1, {})
    _, stats = tokenize_preference_rows([pair], tokenizer, CHAT_TEMPLATE, 512, "skip")
    assert (stats.kept, dict(stats.skipped)) == (1, {})


def test_a_second_run_skips_what_is_curated_and_drops_repeats(shop: Shop) -> None:
    trace = shop.trace("燃气表多久检定一次？", "十年。")
    shop.rate(trace, "up")
    first = curate_feedback(shop.workspace, RULES, "meters")
    assert first.sft_dataset == "meters@1"

    again = curate_feedback(shop.workspace, RULES, "meters")
    assert again.sft_dataset is None and again.reason is not None
    assert "already_curated" in again.reason and again.counts["removed_already_curated"] == 1

    repeat = shop.trace("燃气表多久检定一次？", "十年。")
    shop.rate(repeat, "up")
    fresh = shop.trace("调压箱多久巡检一次？", "每月一次。")
    shop.rate(fresh, "up")
    third = curate_feedback(shop.workspace, RULES, "meters")
    assert third.sft_dataset == "meters@2"
    assert third.counts["sft"] == 1 and third.counts["removed_exact_duplicate"] == 1
    assert len(_rows(shop, third.sft_dataset)) == 2  # the previous version's row, and the new one

    # A new down-vote pairs with an up-vote curated before: the pair is new, so it is kept.
    wrong = shop.trace("燃气表多久检定一次？", "五十年。")
    down = shop.rate(wrong, "down")
    fourth = curate_feedback(shop.workspace, RULES, "meters")
    (pair,) = _rows(shop, fourth.preference_dataset)
    assert (pair["chosen"], pair["rejected"], pair["meta"]["kind"]) == (
        "十年。",
        "五十年。",
        "vote_pair",
    )
    assert down.id in pair["meta"]["feedback_ids"] and len(pair["meta"]["trace_ids"]) == 2
    assert fourth.sft_dataset == "meters@2"  # nothing new for SFT: the latest version stands


def test_moderation_drops_unsafe_rows_and_an_empty_curation_says_why(shop: Shop) -> None:
    assert curate_feedback(shop.workspace, RULES, "empty").reason == (
        "no feedback: rate answers with POST /v1/feedback or `feilun feedback add`"
    )
    trace = shop.trace("How do I make a bomb at home?", "I can't help with that.")
    shop.rate(trace, "up")
    purged = shop.trace("Where is the nearest service centre?", "On Main Street.")
    shop.rate(purged, "up")
    with shop.workspace.database.begin() as connection:
        connection.execute(sa.delete(traces).where(traces.c.id == purged))
    result = curate_feedback(shop.workspace, RULES, "unsafe")
    assert result.sft_dataset is None
    assert result.counts["removed_moderation"] == 1 and result.counts["skipped_trace_purged"] == 1
    assert result.reason is not None and "removed_moderation 1" in result.reason


def test_rows_repeating_a_dataset_named_in_the_rules_are_dropped(shop: Shop) -> None:
    from feilun.data.datasets import save_dataset

    seed = [
        {
            "messages": [
                {"role": "user", "content": "What pressure does a domestic meter see?"},
                {"role": "assistant", "content": "About 2 kPa, the low-pressure supply."},
            ]
        }
    ]
    save_dataset(shop.workspace.catalog, shop.workspace.artifacts, "seed", seed)
    near = shop.trace(
        "What pressure does a domestic meter see?", "About 2 kPa, the low pressure supply!"
    )
    shop.rate(near, "up")
    kept = curate_feedback(shop.workspace, RULES, "meters")
    assert kept.sft_dataset == "meters@1"  # with nothing to compare against, it is new

    other = shop.trace(
        "What pressure does a domestic meter see?", "About 2 kPa, the low pressure supply!!"
    )
    shop.rate(other, "up")
    result = curate_feedback(shop.workspace, RULES, "pressure", overrides=["dedup.against=[seed]"])
    assert result.sft_dataset is None and result.counts["removed_near_duplicate"] == 2
