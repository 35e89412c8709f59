"""Latency the gateway's moderation adds to one request with a 200-token answer.

    .venv/bin/python benchmarks/serving_moderation.py                # table on stdout
    .venv/bin/python benchmarks/serving_moderation.py --out r.json   # also the figures as JSON

Measures the serving code path itself (`feilun.serving.moderation`), without a model: the
prompt screen, then the whole answer (`screen_completions`) or the streamed answer fed as 200
one-token Deltas through a `StreamScreen`, then the trace's PII masking. Answers are benign
Chinese and English texts from the shared CMRC 2018 / XQuAD contexts cut to about 200 tokens
(≈ 300 Chinese characters, ≈ 150 English words). Lexicon: the shipped default; the 15k-term
lexicon of benchmarks/moderation.py when `--big` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from feilun.core.protocols import Completion, Delta, Usage
from feilun.core.records import Message
from feilun.governance.lexicon import default_lexicon
from feilun.governance.moderation import Moderator, Policy
from feilun.serving.gateway import Principal
from feilun.serving.moderation import Moderation, screen_completions, screen_prompt

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
PRINCIPAL = Principal("ten_bench", "bench", "sk-bench", None)
TOKENS = 200


def answers(count: int) -> list[tuple[str, list[str]]]:
    """(prompt, 200 one-token pieces) pairs, half Chinese (1.5 chars/token), half English."""
    out = []
    for name, chars_per_token, question in (
        ("cmrc2018/trial.jsonl", 1.5, "请介绍一下这段内容。"),
        ("xquad/xquad.en.jsonl", 4.0, "Please summarise this passage."),
    ):
        with (DATA / name).open(encoding="utf-8") as f:
            contexts = sorted({json.loads(line)["context"] for line in f})
        for context in contexts[:count]:
            text = context[: int(TOKENS * chars_per_token)]
            step = len(text) / TOKENS
            pieces = [text[int(i * step) : int((i + 1) * step)] for i in range(TOKENS)]
            out.append((question, pieces))
    return out


def run(moderation: Moderation, prompt: str, pieces: list[str], is_stream: bool) -> float:
    """Seconds the moderation of one request takes."""
    started = time.perf_counter()
    screening, _ = screen_prompt(
        moderation, PRINCIPAL, [[Message(role="user", content=prompt)]], "messages"
    )
    assert screening is not None
    text = "".join(pieces)
    if is_stream:
        screen = screening.stream(0)
        for count, piece in enumerate(pieces, start=1):
            screen.feed(Delta(text=piece, completion_tokens=count))
        screen.feed(Delta(text="", completion_tokens=len(pieces), finish_reason="stop"))
    else:
        usage = Usage(prompt_tokens=10, completion_tokens=len(pieces))
        screen_completions(
            screening, [Completion(text=text, finish_reason="stop", usage=usage)], usage
        )
    screening.trace({"choices": [{"text": text}]})
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50, help="Contexts per language.")
    parser.add_argument("--big", action="store_true", help="Also the 15k-term lexicon.")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here.")
    args = parser.parse_args()
    lexicons = {"default lexicon": default_lexicon()}
    if args.big:
        from moderation import sensitive_lexicon  # benchmarks/moderation.py

        lexicons["15k lexicon"] = sensitive_lexicon().merged(default_lexicon())
    items = answers(args.items)
    rows: list[dict[str, Any]] = []
    for name, lexicon in lexicons.items():
        moderation = Moderation(Moderator(lexicon), lambda _: Policy())
        for is_stream in (False, True):
            run(moderation, *items[0], is_stream)  # warm up
            times = [run(moderation, p, pieces, is_stream) * 1000 for p, pieces in items]
            times.sort()
            rows.append(
                {
                    "lexicon": name,
                    "mode": "stream" if is_stream else "whole",
                    "requests": len(times),
                    "p50_ms": round(statistics.median(times), 3),
                    "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3),
                }
            )
    print("| lexicon | answer | requests | p50 ms | p95 ms |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['lexicon']} | {r['mode']} | {r['requests']} | {r['p50_ms']} | {r['p95_ms']} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
