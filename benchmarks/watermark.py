"""Text watermark: detection rate, false positives on human text, perplexity cost; a peer.

    .venv/bin/python benchmarks/watermark.py                  # tables on stdout
    .venv/bin/python benchmarks/watermark.py --prompts 10     # a quicker run
    .venv/bin/python benchmarks/watermark.py --out r.json     # also the figures as JSON

The packaged SmolLM2-135M-Instruct writes `--prompts` essays (English topics, sampled at
temperature 0.7, batched), once with our watermark (γ 0.25, δ 2.0, a
random key) and once without. Each text is re-tokenised and scored on its first `--tokens`
tokens; texts shorter than that are counted and left out. Human text: the CMRC 2018 (zh) and
XQuAD (en, zh) contexts of the shared data, read at run time, each scored on its first
`--tokens` tokens (shorter ones whole, if at least 16). Perplexity: of each generation's own
tokens, given its prompt, under the same model without any bias.

Detection: TPR at z ≥ 4 (our default) and at the threshold that keeps the false-positive rate
on human text and unwatermarked generations at most 1 %. Peer, same run: transformers'
`WatermarkLogitsProcessor` (the same method, its own seeding: `lefthash`, same γ and δ) through
`model.generate` on the same prompts and settings, scored by its `WatermarkDetector`
(ignore_repeated_ngrams=True) on the same human texts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import WatermarkDetector, WatermarkingConfig

from feilun.core.protocols import GenerationParams
from feilun.core.records import Message
from feilun.governance.watermark import MIN_TOKENS, Watermark, detect
from feilun.models.packaged import SMOLLM2
from feilun.models.runtimes.transformers import TransformersChatModel
from feilun.models.sources.gguf import SOURCE

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
GAMMA, DELTA, TEMPERATURE = 0.25, 2.0, 0.7
SEED = 20250601
PEER_BATCH = 10
TOPICS = [
    "the history of the printing press",
    "how volcanoes form",
    "why sleep matters",
    "the water cycle",
    "learning a second language",
    "the life of honey bees",
    "how bridges carry loads",
    "the causes of inflation",
    "training for a marathon",
    "the invention of the telephone",
    "coral reefs",
    "how vaccines work",
    "the Roman Empire",
    "renewable energy",
    "the role of museums",
    "urban gardening",
    "the history of chess",
    "how computers store data",
    "the Silk Road",
    "climate and weather",
    "the benefits of reading",
    "how airplanes fly",
    "the human immune system",
    "rainforests",
    "the history of tea",
    "volunteering in a community",
    "how rivers shape valleys",
    "the solar system",
    "the importance of bees to farming",
    "public libraries",
    "the history of the bicycle",
    "how the heart works",
    "desert animals",
    "the Industrial Revolution",
    "photography",
    "saving money",
    "the deep ocean",
    "the history of maps",
    "composting",
    "the Olympic Games",
    "earthquakes",
    "glaciers",
]


def human_texts() -> list[tuple[str, str]]:
    """(source, context) of each distinct shared QA context."""
    texts: dict[str, str] = {}
    files = {
        "cmrc2018 zh": DATA / "cmrc2018" / "trial.jsonl",
        "xquad en": DATA / "xquad" / "xquad.en.jsonl",
        "xquad zh": DATA / "xquad" / "xquad.zh.jsonl",
    }
    for source, path in files.items():
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.setdefault(json.loads(line)["context"], source)
    return [(source, context) for context, source in texts.items()]


def perplexity(model: Any, prompt: list[int], answer: list[int]) -> float:
    """exp(mean NLL) of `answer`'s tokens after `prompt`, under `model`."""
    ids = torch.tensor([prompt + answer])  # (1, P + A)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()  # (A, V)
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(answer))
    return math.exp(float(nll))


def scorable(ids: list[int]) -> bool:
    """Whether `ids` has enough distinct (previous, token) pairs to be scored."""
    return len(set(itertools.pairwise(ids))) >= MIN_TOKENS


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def rate(zs: list[float], threshold: float) -> float:
    return sum(z >= threshold for z in zs) / len(zs) if zs else 0.0


def threshold_at(negatives: list[float], fpr: float) -> float:
    """The smallest threshold above which at most `fpr` of `negatives` fall."""
    ranked = sorted(negatives, reverse=True)
    allowed = math.floor(fpr * len(ranked))
    return ranked[allowed] + 1e-9 if allowed < len(ranked) else -math.inf


def summary(zs: list[float]) -> str:
    return f"{statistics.mean(zs):.2f} ± {statistics.stdev(zs):.2f}" if len(zs) > 1 else "-"


def generate_all(
    hf_model: Any, tokenizer: Any, template: str, count: int, max_tokens: int
) -> dict[str, Any]:
    """Essays with our watermark, without one, and with transformers' (prompt, answer ids)."""
    watermark = Watermark(secrets.token_bytes(32), GAMMA, DELTA)
    marked = TransformersChatModel(
        hf_model, tokenizer, name="smollm2", chat_template=template, watermark=watermark
    )
    plain = TransformersChatModel(hf_model, tokenizer, name="smollm2", chat_template=template)
    topics = (TOPICS * (1 + count // len(TOPICS)))[:count]
    conversations = [
        [Message(role="user", content=f"Write a long, detailed essay about {topic}.")]
        for topic in topics
    ]
    seconds: dict[str, float] = {}
    generated: dict[str, list[tuple[list[int], list[int]]]] = {}  # arm -> (prompt, answer ids)
    prompts = [
        [
            int(i)
            for i in tokenizer.apply_chat_template(
                [{"role": m.role, "content": m.content} for m in messages],
                chat_template=template,
                add_generation_prompt=True,
                tokenize=True,
                return_dict=False,
            )
        ]
        for messages in conversations
    ]
    params = GenerationParams(max_tokens=max_tokens, temperature=TEMPERATURE, seed=SEED)
    for arm, model in (("feilun watermark", marked), ("no watermark", plain)):
        started = time.perf_counter()
        answers = [c.text for c in model.chat_batch(conversations, params)]  # decoded together
        seconds[f"{arm} generation s"] = round(time.perf_counter() - started, 1)
        log(f"{arm}: {len(answers)} texts in {seconds[f'{arm} generation s']} s")
        generated[arm] = [(p, model.encode(a)) for p, a in zip(prompts, answers, strict=True)]
    # transformers' own watermark, the same prompts and sampling settings, batched.
    peer_config = WatermarkingConfig(greenlist_ratio=GAMMA, bias=DELTA, seeding_scheme="lefthash")
    started = time.perf_counter()
    peer: list[tuple[list[int], list[int]]] = []
    torch.manual_seed(SEED)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    for start in range(0, len(prompts), PEER_BATCH):
        batch = prompts[start : start + PEER_BATCH]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])  # (B, W), left-padded
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        out = hf_model.generate(
            ids,
            attention_mask=mask,
            watermarking_config=peer_config,
            do_sample=True,
            temperature=TEMPERATURE,
            top_k=0,
            max_new_tokens=max_tokens,
            pad_token_id=pad,
        )
        for prompt, row in zip(batch, out[:, width:], strict=True):
            answer = tokenizer.decode(row, skip_special_tokens=True)
            peer.append((prompt, plain.encode(answer)))
    generated["transformers watermark (peer)"] = peer
    log(f"peer: {len(peer)} texts in {time.perf_counter() - started:.1f} s")
    seconds["transformers watermark (peer) generation s"] = round(time.perf_counter() - started, 1)
    return {"key": watermark.key.hex(), "generated": generated, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=200, help="Tokens scored per text.")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/feilun-bench-cache"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--texts", type=Path, help="Generations saved by an earlier run.")
    args = parser.parse_args()
    location = SMOLLM2.locate()
    if location is None:
        raise SystemExit(f"{SMOLLM2.name} is not installed: {SMOLLM2.install_hint}")
    hf_model, tokenizer = SOURCE.load(str(location), args.cache)
    template = SOURCE.inspect(str(location)).chat_template
    results: dict[str, Any] = {"prompts": args.prompts, "tokens_scored": args.tokens}
    saved = args.texts or Path(f"/tmp/feilun-watermark-{args.prompts}x{args.tokens}.json")
    if saved.is_file():  # a previous run's generations (generation is the slow part)
        state = json.loads(saved.read_text())
        log(f"generations read from {saved}")
    else:
        state = generate_all(hf_model, tokenizer, template, args.prompts, args.tokens + 20)
        saved.write_text(json.dumps(state))
    watermark = Watermark(bytes.fromhex(state["key"]), GAMMA, DELTA)
    generated: dict[str, list[tuple[list[int], list[int]]]] = state["generated"]
    results.update(state["seconds"])
    plain = TransformersChatModel(hf_model, tokenizer, name="smollm2", chat_template=template)
    peer_config = WatermarkingConfig(greenlist_ratio=GAMMA, bias=DELTA, seeding_scheme="lefthash")
    detector = WatermarkDetector(hf_model.config, "cpu", peer_config, ignore_repeated_ngrams=True)

    def peer_z(ids: list[int]) -> float:
        out: Any = detector(torch.LongTensor([ids]), return_dict=True)
        return float(out.z_score[0])

    humans = []
    for source, text in human_texts():
        ids = plain.encode(text)[: args.tokens]
        if scorable(ids):
            humans.append((source, ids))
    human_ours = [detect(ids, watermark).z for _, ids in humans]
    human_peer = [peer_z(ids) for _, ids in humans]
    log(f"scored {len(humans)} human texts")
    rows: dict[str, dict[str, Any]] = {}
    for arm, pairs in generated.items():
        long = [(p, a[: args.tokens]) for p, a in pairs if len(a) >= args.tokens]
        long = [(p, a) for p, a in long if scorable(a)]
        is_peer = "peer" in arm
        score = peer_z if is_peer else (lambda ids: detect(ids, watermark).z)
        zs = [score(a) for _, a in long]
        rows[arm] = {
            "texts": len(pairs),
            "long enough": len(long),
            "z": zs,
            "perplexity": [perplexity(hf_model, p, a) for p, a in long],
        }
    # Negatives for each detector: human text and the unwatermarked generations.
    plain_ours = rows["no watermark"]["z"]
    plain_peer = [peer_z(a) for _, a in generated["no watermark"] if len(a) >= args.tokens]
    tau_ours = threshold_at(human_ours + plain_ours, 0.01)
    tau_peer = threshold_at(human_peer + plain_peer, 0.01)
    print(
        f"\n{args.prompts} prompts, SmolLM2-135M, T={TEMPERATURE}, γ={GAMMA}, δ={DELTA}, "
        f"scored on the first {args.tokens} tokens; human texts: {len(humans)}"
    )
    print(
        "\n| text | detector | n | z mean ± sd | detected at z ≥ 4 | at FPR ≤ 1 % (τ) "
        "| perplexity (median) |"
    )
    print("|---|---|---|---|---|---|---|")
    table: list[dict[str, Any]] = []
    for arm, row in rows.items():
        is_peer = "peer" in arm
        tau = tau_peer if is_peer else tau_ours
        zs = row["z"]
        entry = {
            "text": arm,
            "detector": "transformers" if is_peer else "feilun",
            "n": len(zs),
            "of": row["texts"],
            "z_mean": statistics.mean(zs) if zs else None,
            "tpr_z4": rate(zs, 4.0),
            "tpr_fpr1": rate(zs, tau),
            "tau": tau,
            "perplexity_median": statistics.median(row["perplexity"]) if zs else None,
        }
        table.append(entry)
        print(
            f"| {arm} | {entry['detector']} | {len(zs)}/{row['texts']} | {summary(zs)} | "
            f"{entry['tpr_z4']:.1%} | {entry['tpr_fpr1']:.1%} ({tau:.2f}) | "
            f"{entry['perplexity_median']:.2f} |"
        )
    for name, zs, tau in (("feilun", human_ours, tau_ours), ("transformers", human_peer, tau_peer)):
        by_source = {
            s: [z for (src, _), z in zip(humans, zs, strict=True) if src == s]
            for s in dict.fromkeys(src for src, _ in humans)
        }
        parts = ", ".join(f"{s} {rate(v, 4.0):.1%} of {len(v)}" for s, v in by_source.items())
        print(
            f"| human text | {name} | {len(zs)} | {summary(zs)} | {rate(zs, 4.0):.1%} "
            f"({parts}) | {rate(zs, tau):.1%} | - |"
        )
        table.append(
            {
                "text": "human",
                "detector": name,
                "n": len(zs),
                "z_mean": statistics.mean(zs),
                "fpr_z4": rate(zs, 4.0),
                "fpr_tau": rate(zs, tau),
                "max_z": max(zs),
            }
        )
    results["table"] = table
    print("\n" + json.dumps({k: v for k, v in results.items() if k != "table"}))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
