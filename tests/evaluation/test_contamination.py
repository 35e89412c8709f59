from __future__ import annotations

import json

from feilun.data.datasets import save_dataset
from feilun.evaluation.contamination import find_contaminated, row_texts
from feilun.evaluation.items import load_mc
from feilun.evaluation.reports import load_payload
from feilun.evaluation.suites import Suite, run_suite

from .conftest import shared


def test_items_sharing_an_ngram_with_training_text_are_found() -> None:
    items = {
        "en": "Which of the following is the body cavity that contains the pituitary gland?",
        "zh": "燃气公司有大量关于管道、阀门、仪表和安全规程的资料，请问其中哪一类最重要？",
        "short": "Two plus two?",
        "clean": "An entirely different question about the migration of arctic terns.",
    }
    training = [
        "Notes: which of the following is the BODY cavity that contains the pituitary gland? "
        "(copied from a test)",
        "资料显示，燃气公司有大量关于管道、阀门、仪表和安全规程的资料。",
        "What is two plus two? Two plus two is four.",
    ]
    assert find_contaminated(items, training) == {"en", "zh", "short"}
    assert find_contaminated(items, ["nothing in common here"]) == set()


def test_rows_of_every_dataset_shape_give_their_texts() -> None:
    row = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert list(row_texts(row)) == ["q", "a"]
    assert list(row_texts({"prompt": "p", "chosen": "c", "rejected": "r"})) == ["p", "c", "r"]


def test_a_run_reports_scores_with_and_without_contaminated_items(ctx) -> None:
    path = shared("mmlu", "val.jsonl")
    items = load_mc(path).items[:8]
    leaked = [items[1], items[5]]
    rows = [
        {"id": f"r{i}", "text": f"Practice: {item.question}", "meta": {}}
        for i, item in enumerate(leaked)
    ]
    rows.append({"id": "x", "text": "Unrelated handbook text about valves and meters.", "meta": {}})
    save_dataset(ctx.catalog, ctx.artifacts, "leaky", rows)
    suite = Suite.model_validate(
        {
            "name": "contaminated",
            "contamination": ["leaky"],
            "tasks": [{"name": "mmlu", "kind": "mc", "path": str(path), "limit": 8}],
        }
    )
    report = run_suite(ctx, suite, "tiny")
    task = load_payload(ctx.artifacts, report)["tasks"][0]
    found = task["contamination"]
    assert found["datasets"] == ["leaky@1"] and found["ngram"] == 13
    assert found["flagged"] == sorted([items[1].id, items[5].id]) and found["n_flagged"] == 2
    kept = [i["score"] for i in task["items"] if not i["contaminated"]]
    assert len(kept) == 6
    assert found["metrics_clean"]["accuracy"]["value"] == sum(kept) / 6
    assert json.dumps(found)  # JSON all the way down
