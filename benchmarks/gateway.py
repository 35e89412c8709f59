"""Gateway overhead: Feilun's gateway vs calling the upstream directly vs LiteLLM's proxy.

One upstream runtime (`feilun serve` of a tiny model, the same for every row) is called three
ways in the same run: directly, through Feilun's gateway (the upstream registered as an
`openai_upstream` model, with keys, metering and traces on), and through LiteLLM's proxy
(installed only in benchmarks/.env). Added latency = via-proxy latency - direct latency,
measured one request at a time (what a proxy adds to a call) and at `--concurrency` (where, on
a small machine, client, proxy and upstream share the cores, so it also counts proxy CPU).

    .venv/bin/python benchmarks/gateway.py [--requests 200] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parents[1]
FEILUN = str(Path(sys.executable).with_name("feilun"))
LITELLM = ROOT / "benchmarks" / ".env" / "bin" / "litellm"
MODEL = "tiny"


@dataclass
class Row:
    """Measured figures of one way of calling."""

    name: str
    p50_ms: float  # one request at a time
    p99_ms: float
    loaded_p50_ms: float  # at --concurrency
    loaded_p99_ms: float
    requests_per_s: float  # at --concurrency
    ttft_p50_ms: float  # streams: until the first token
    stream_tokens_per_s: float  # streams: tokens after the first / time after the first
    whole_stream_tokens_per_s: float  # streams: all tokens / the whole call


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def feilun(workspace: Path, *args: str) -> str:
    env = {**os.environ, "FEILUN_WORKSPACE": str(workspace)}
    done = subprocess.run([FEILUN, *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def make_key(workspace: Path) -> str:
    """Create a tenant and an API key; return the secret."""
    import json

    feilun(workspace, "tenants", "create", "bench")
    return str(
        json.loads(feilun(workspace, "keys", "create", "--tenant", "bench", "--json"))["key"]
    )


def start(
    command: list[str], env: dict[str, str], health_url: str, cpus: set[int] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server (on `cpus` only, when given) and wait until it answers."""
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    wait_healthy(health_url, process)
    return process


def placement(pin: bool) -> tuple[set[int] | None, set[int] | None, str]:
    """The upstream's cores, everyone else's cores, and how to say it.

    Pinned (the default on 2+ cores): the upstream runtime gets core 0 to itself, as a model
    server has its own accelerator or cores in a deployment; the client and the proxies share
    the rest, so a proxy's CPU slows the proxy, not the model. Shared: everything everywhere.
    """
    cores = sorted(os.sched_getaffinity(0))
    if not pin or len(cores) < 2:
        return None, None, f"all processes share {len(cores)} cores"
    return (
        {cores[0]},
        set(cores[1:]),
        (
            f"upstream pinned to core {cores[0]} (1 torch thread); client and proxies on "
            f"{len(cores) - 1} other core(s)"
        ),
    )


@dataclass
class Way:
    """One way of calling the upstream: directly or through a proxy."""

    name: str
    base_url: str
    key: str


MESSAGES = [{"role": "user", "content": "Say something about data flywheels."}]
ROUNDS = 4  # the loaded phase and the streams alternate between ways this many times


def measure(ways: list[Way], requests: int, concurrency: int, streams: int) -> list[Row]:
    """Every phase interleaves the ways, so a noisy neighbour slows all of them alike."""
    clients = {
        way.name: openai.OpenAI(base_url=way.base_url, api_key=way.key, max_retries=0, timeout=120)
        for way in ways
    }

    def one(name: str) -> float:
        started = time.perf_counter()
        clients[name].chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
        return (time.perf_counter() - started) * 1000

    for way in ways:  # warm-up: model load, connection pools
        for _ in range(5):
            one(way.name)
    alone: dict[str, list[float]] = {way.name: [] for way in ways}
    for _ in range(requests):
        for way in ways:
            alone[way.name].append(one(way.name))
    loaded: dict[str, list[float]] = {way.name: [] for way in ways}
    loaded_s = dict.fromkeys(alone, 0.0)
    per_round = max(requests // ROUNDS, concurrency)
    for _ in range(ROUNDS):
        for way in ways:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrency) as pool:
                loaded[way.name] += pool.map(one, [way.name] * per_round)
            loaded_s[way.name] += time.perf_counter() - started
    streamed = {way.name: Streamed() for way in ways}
    for _ in range(streams):
        for way in ways:
            streamed[way.name].add(clients[way.name])
    return [
        Row(
            name,
            statistics.median(alone[name]),
            _p99(sorted(alone[name])),
            statistics.median(loaded[name]),
            _p99(sorted(loaded[name])),
            len(loaded[name]) / loaded_s[name],
            statistics.median(streamed[name].ttft_ms),
            streamed[name].after_first_tokens / streamed[name].after_first_s,
            streamed[name].tokens / streamed[name].seconds,
        )
        for name in alone
    ]


@dataclass
class Streamed:
    """The streams of one way: time to the first token, and the token rate after it.

    The rate after the first token (vLLM's 1/TPOT) is what a proxy could throttle; the time to
    the first token holds the proxy's admission, like the latency rows.
    """

    ttft_ms: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    after_first_tokens: int = 0
    after_first_s: float = 0.0

    def add(self, client: openai.OpenAI) -> None:
        begun = time.perf_counter()
        first = last = 0.0
        tokens = 0
        for chunk in client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=64,
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                last = time.perf_counter()
                first = first or last
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        self.seconds += time.perf_counter() - begun
        self.tokens += tokens
        self.ttft_ms.append((first - begun) * 1000)
        self.after_first_tokens += tokens - 1  # a piece can hold several tokens, or none
        self.after_first_s += last - first


def _p99(sorted_ms: list[float]) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * 0.99))]


def write_litellm_config(folder: Path, upstream_url: str, key: str) -> Path:
    path = folder / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream_url}\n"
        f"      api_key: {key}\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--streams", type=int, default=20, help="streams of 64 tokens per way")
    parser.add_argument(
        "--shared-cores", action="store_true", help="do not pin the upstream to its own core"
    )
    args = parser.parse_args()
    upstream_cpus, proxy_cpus, args.placement = placement(not args.shared_cores)
    if proxy_cpus is not None:
        os.sched_setaffinity(0, proxy_cpus)  # the client
    from feilun.models.tiny import save_tiny_model

    processes: list[subprocess.Popen[bytes]] = []
    ways: list[Way] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        try:
            upstream_ws, gateway_ws = folder / "upstream", folder / "gateway"
            feilun(upstream_ws, "init")
            feilun(
                upstream_ws, "models", "add", MODEL, "--path", str(save_tiny_model(folder / "m"))
            )
            upstream_key = make_key(upstream_ws)
            up_port = free_port()
            upstream_url = f"http://127.0.0.1:{up_port}/v1"
            processes.append(
                start(
                    [FEILUN, "serve", "--port", str(up_port)],
                    {"FEILUN_WORKSPACE": str(upstream_ws)}
                    | ({"OMP_NUM_THREADS": "1"} if upstream_cpus else {}),
                    f"http://127.0.0.1:{up_port}/health",
                    upstream_cpus,
                )
            )
            ways.append(Way("direct (upstream)", upstream_url, upstream_key))

            feilun(gateway_ws, "init")
            feilun(
                gateway_ws,
                "models",
                "add",
                MODEL,
                "--upstream",
                upstream_url,
                "--api-key-env",
                "BENCH_UPSTREAM_KEY",
            )
            gateway_key = make_key(gateway_ws)
            gw_port = free_port()
            processes.append(
                start(
                    [FEILUN, "serve", "--port", str(gw_port)],
                    {"FEILUN_WORKSPACE": str(gateway_ws), "BENCH_UPSTREAM_KEY": upstream_key},
                    f"http://127.0.0.1:{gw_port}/health",
                    proxy_cpus,
                )
            )
            ways.append(Way("feilun gateway", f"http://127.0.0.1:{gw_port}/v1", gateway_key))

            if LITELLM.exists():
                ll_port = free_port()
                config = write_litellm_config(folder, upstream_url, upstream_key)
                processes.append(
                    start(
                        [
                            str(LITELLM),
                            "--config",
                            str(config),
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(ll_port),
                            "--num_workers",
                            "1",
                        ],
                        {"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
                        f"http://127.0.0.1:{ll_port}/health/liveliness",
                        proxy_cpus,
                    )
                )
                ways.append(Way("litellm proxy", f"http://127.0.0.1:{ll_port}/v1", "none"))
            rows = measure(ways, args.requests, args.concurrency, args.streams)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    print_table(rows, args)


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    direct = rows[0]
    print(
        f"\n{args.requests} non-stream requests (max_tokens=8) one at a time, then at "
        f"concurrency {args.concurrency}; {args.streams} streams of 64 tokens; ways "
        f"interleaved; {args.placement}"
    )
    print(
        f"{'way':<20}{'p50 ms':>8}{'p99 ms':>8}{'+p50':>7}{'+p99':>7}"
        f"{'loaded p50':>12}{'+p50':>7}{'req/s':>8}{'ttft ms':>9}{'stream tok/s':>14}"
        f"{'whole stream':>14}"
    )
    for row in rows:
        print(
            f"{row.name:<20}{row.p50_ms:>8.1f}{row.p99_ms:>8.1f}"
            f"{row.p50_ms - direct.p50_ms:>7.1f}{row.p99_ms - direct.p99_ms:>7.1f}"
            f"{row.loaded_p50_ms:>12.1f}{row.loaded_p50_ms - direct.loaded_p50_ms:>7.1f}"
            f"{row.requests_per_s:>8.1f}{row.ttft_p50_ms:>9.1f}{row.stream_tokens_per_s:>14.1f}"
            f"{row.whole_stream_tokens_per_s:>14.1f}"
        )
    by_name = {row.name: row for row in rows}
    ours = by_name["feilun gateway"]
    print(
        "streaming throughput (tokens after the first) feilun / direct: "
        f"{ours.stream_tokens_per_s / direct.stream_tokens_per_s:.2f}x; whole streams "
        f"(with the time to the first token): "
        f"{ours.whole_stream_tokens_per_s / direct.whole_stream_tokens_per_s:.2f}x"
    )
    if "litellm proxy" not in by_name:
        print(f"litellm proxy: not installed in {LITELLM.parent.parent} (see benchmarks/README.md)")
        return
    peer = by_name["litellm proxy"]
    for label, figure in (("one at a time", "p50_ms"), ("loaded", "loaded_p50_ms")):
        added_ours = max(getattr(ours, figure) - getattr(direct, figure), 0.01)
        added_peer = max(getattr(peer, figure) - getattr(direct, figure), 0.01)
        print(f"added p50 latency feilun / litellm, {label}: {added_ours / added_peer:.2f}x")
    print(f"requests/s feilun / litellm: {ours.requests_per_s / peer.requests_per_s:.2f}x")


if __name__ == "__main__":
    main()
