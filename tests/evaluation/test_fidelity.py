"""Our multiple-choice scores vs lm-evaluation-harness, and the shared-prefix scoring path.

The slow test runs benchmarks/eval.py's two runners on the same items of the shared MMLU and
CMMLU data with the packaged SmolLM2: lm-eval builds its own prompts from the raw rows with its
MMLU task config and scores them with its `hf` model on our loaded weights. Run it with
`make fidelity-env` done and `-m slow -s` to see the figures.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from feilun.evaluation.scoring import GROUP_TOKENS, MIN_SHARED_TOKENS, HfScorer
from feilun.models.packaged import SMOLLM2
from feilun.models.tiny import build_tiny_model

from .conftest import shared
from .test_scoring import _reference

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "eval.py"
# Few-shot style: one long description and solved examples, then different questions.
PREFIX = "The following are questions about arithmetic, with answers.\n\n" + "".join(
    f"What is {a} plus {a}?\nA. {2 * a}\nB. {a}\nAnswer: A\n\n" for a in range(1, 9)
)
REQUESTS = [
    (PREFIX + "What is 10 plus 10?\nAnswer:", [" A", " B", " C"]),
    (PREFIX + "What is twelve plus twelve, in words?\nAnswer:", [" twenty-four", " ten"]),
    (PREFIX + "Is 3 odd?\nAnswer:", [" A", " B"]),
]


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any]:
    return build_tiny_model(init_std=0.3)


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_shared_prefix_scores_equal_one_option_at_a_time(tiny, batch_size: int) -> None:
    model, tokenizer = tiny
    got = HfScorer(model, tokenizer, name="tiny", batch_size=batch_size).loglikelihoods(REQUESTS)
    for (context, options), scores in zip(REQUESTS, got, strict=True):
        expected = [_reference(model, tokenizer, context, o) for o in options]
        assert scores == pytest.approx(expected, abs=1e-4)


def test_common_prefix_runs_once_as_a_cache(tiny) -> None:
    model, tokenizer = tiny
    assert len(tokenizer.encode(PREFIX)) >= GROUP_TOKENS
    shapes: list[tuple[int, int]] = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    scorer = HfScorer(model, tokenizer, name="tiny")
    try:
        scorer.loglikelihoods(REQUESTS)
    finally:
        hook.remove()
    (one, prefix), (rows, suffix) = shapes  # the prefix once, then every row's own tokens
    assert one == 1 and prefix >= len(tokenizer.encode(PREFIX)) - 2 >= MIN_SHARED_TOKENS
    assert rows == len(scorer._rows(REQUESTS)) and suffix * 4 < prefix


def test_inputs_past_the_window_are_cut_from_the_left(tiny) -> None:
    model, tokenizer = tiny
    window = 40
    got = HfScorer(model, tokenizer, name="tiny", max_length=window).loglikelihoods(REQUESTS)
    for (context, options), scores in zip(REQUESTS, got, strict=True):
        context_ids = tokenizer.encode(context.rstrip(" "))
        assert len(context_ids) > window
        for option, score in zip(options, scores, strict=True):
            target = tokenizer.encode(context + option)[len(context_ids) :]
            inputs = (context_ids + target)[:-1][-window:]  # lm-eval's left truncation
            with torch.no_grad():
                logprobs = model(torch.tensor([inputs])).logits.log_softmax(-1)[0]  # (T, V)
            start = len(inputs) - len(target)
            expected = sum(logprobs[start + k, t].item() for k, t in enumerate(target))
            assert score == pytest.approx(expected, abs=1e-4)


def _bench() -> ModuleType:
    """benchmarks/eval.py as a module: the runners the benchmark times."""
    spec = importlib.util.spec_from_file_location("feilun_bench_eval", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smollm2() -> Iterator[tuple[ModuleType, Any, Any]]:
    """The benchmark module and the packaged SmolLM2, on one intra-op thread.

    Two threads spinning at every barrier on a busy shared CPU are far slower than one.
    """
    pytest.importorskip(
        "lm_eval.models.huggingface", reason="lm-evaluation-harness: run `make fidelity-env`"
    )
    if SMOLLM2.locate() is None:
        pytest.skip(f"{SMOLLM2.name} is not installed ({SMOLLM2.install_hint})")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    bench = _bench()
    yield (bench, *bench.load_model("smollm2"))
    torch.set_num_threads(threads)


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize(
    ("name", "per_subject", "shots"), [("mmlu", 3, 0), ("cmmlu", 8, 0), ("mmlu", 1, 2)]
)
def test_smollm2_accuracy_and_prompts_equal_lm_eval(
    smollm2, name: str, per_subject: int, shots: int
) -> None:
    bench, model, tokenizer = smollm2
    test, dev = (shared(*p.split("/")) for p in bench.SETS[name])
    ids = {item.id for item in bench.pick(bench.load_mc(test).items, per_subject)}
    ours = bench.run_ours(model, tokenizer, test, dev, ids, shots, 16)
    peer = bench.run_lm_eval(model, tokenizer, bench.lm_eval_tasks(test, dev, ids, shots), 16)
    differ, diff = bench.compare(ours, peer)
    print(
        f"\n{name} {shots}-shot n={len(ids)}: accuracy ours {ours.accuracy:.4f} lm-eval "
        f"{peer.accuracy:.4f}; prompts differ {differ}; max |Δ loglik| {diff:.1e}; items/s "
        f"ours {ours.items_per_s:.2f} lm-eval {peer.items_per_s:.2f}"
    )
    assert len(ours.requests) == len(peer.requests) == len(ids)
    assert differ == 0  # lm-eval built exactly our prompts and options
    assert abs(ours.accuracy - peer.accuracy) <= 0.01
    assert diff < 1e-3
