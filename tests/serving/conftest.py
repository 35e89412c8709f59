"""HTTP test harness (helper HTTP): the real app under uvicorn, a tiny model, an in-memory ledger.

`MemoryLedger` is a real, minimal Ledger (keys in a dict, token budgets, settled outcomes kept
in memory); the SQL ledger is tested on its own. The server runs on a free port of 127.0.0.1 in
a background thread, and tests talk to it with the official `openai` client.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from feilun.core.errors import BackendUnavailable, NotFound, QuotaExceeded
from feilun.core.protocols import ChatModel, Embedder
from feilun.core.records import new_id
from feilun.serving.errors import AuthenticationFailed, PermissionDenied
from feilun.serving.gateway import Admission, Gateway, Outcome, Principal, ServerLimits
from feilun.serving.limits import Limiter
from feilun.serving.limits.memory import MemoryLimiter
from feilun.serving.limits.redis import RedisLimiter
from feilun.store.database import Database
from feilun.store.migrate import upgrade

KEY = "sk-test-alpha-0123456789"
KEY_RESTRICTED = "sk-test-restricted-0123456789"  # may use "other" only
KEY_BROKE = "sk-test-broke-0123456789"  # no tokens left: every admit is a 429
KEY_REVOKED = "sk-test-revoked-0123456789"
KEYS = {"alpha": KEY, "restricted": KEY_RESTRICTED, "broke": KEY_BROKE, "revoked": KEY_REVOKED}
RETRY_AFTER_S = 7.2
MAX_BODY_BYTES = 64 * 1024
REDIS_URL = "redis://127.0.0.1:6379/0"
T = TypeVar("T")


@dataclass
class MemoryLedger:
    """A Ledger keeping keys, budgets and settled outcomes in memory."""

    keys: dict[str, Principal] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)
    budgets: dict[str, int] = field(default_factory=dict)  # tenant → tokens left
    outcomes: dict[str, tuple[Admission, Outcome]] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)  # trace id → tokens
    lock: threading.Lock = field(default_factory=threading.Lock)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationFailed("missing API key", fix="send Authorization: Bearer <key>")
        secret = authorization.removeprefix("Bearer ").encode()
        found = None
        for key, principal in self.keys.items():
            if hmac.compare_digest(key.encode(), secret):
                found = (key, principal)
        if found is None:
            raise AuthenticationFailed("invalid API key", fix="check the key")
        if found[0] in self.revoked:
            raise AuthenticationFailed("API key revoked", fix="ask for a new key")
        return found[1]

    def admit(self, principal: Principal, model: str, reserve_tokens: int) -> Admission:
        if principal.models is not None and model not in principal.models:
            raise PermissionDenied(f"key {principal.key_prefix} may not use model {model!r}")
        with self.lock:
            left = self.budgets.get(principal.tenant_id)
            if left is not None and left < reserve_tokens:
                error = QuotaExceeded(f"tenant {principal.tenant_name} is over its token quota")
                error.retry_after_s = RETRY_AFTER_S  # type: ignore[attr-defined]
                raise error
            admission = Admission(
                principal, model, reserve_tokens, new_id("trc"), time.perf_counter()
            )
            self.reserved[admission.trace_id] = reserve_tokens
        return admission

    def settle(self, admission: Admission, outcome: Outcome) -> None:
        with self.lock:
            if admission.trace_id in self.outcomes:
                return
            self.outcomes[admission.trace_id] = (admission, outcome)
            self.reserved.pop(admission.trace_id, None)

    def outcome(self, trace_id: str, timeout_s: float = 5.0) -> Outcome:
        """The settled outcome of a trace, waiting a little for streams that end late."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if trace_id in self.outcomes:
                    return self.outcomes[trace_id][1]
            time.sleep(0.01)
        raise AssertionError(f"trace {trace_id} was never settled")


class Paced:
    """A ChatModel wrapper that waits between deltas, so streams last long enough to cut."""

    def __init__(self, inner: Any, delay_s: float = 0.01) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.context_length = inner.context_length
        self.closed = 0  # streams closed early (the server must close what it abandons)

    def chat(self, messages: Any, params: Any) -> Any:
        return self.inner.chat(messages, params)

    def count_tokens(self, messages: Any) -> int:
        return int(self.inner.count_tokens(messages))

    def stream(self, messages: Any, params: Any) -> Iterator[Any]:
        deltas = self.inner.stream(messages, params)
        return self._paced(deltas)

    def _paced(self, deltas: Any) -> Iterator[Any]:
        finished = False
        try:
            for delta in deltas:
                time.sleep(self.delay_s)
                yield delta
            finished = True
        finally:
            deltas.close()
            if not finished:
                self.closed += 1


class Faulty(Paced):
    """A ChatModel whose streams fail after three deltas (an upstream that drops)."""

    def _paced(self, deltas: Any) -> Iterator[Any]:
        try:
            for count, delta in enumerate(deltas):
                if count == 3:
                    raise BackendUnavailable("upstream went away", fix="retry later")
                yield delta
        finally:
            deltas.close()


def _principal(name: str, models: tuple[str, ...] | None = None) -> Principal:
    return Principal(
        tenant_id=f"ten_{name}", tenant_name=name, key_prefix=f"sk-{name[:4]}", models=models
    )


def make_ledger() -> MemoryLedger:
    """Keys for every case the tests need."""
    ledger = MemoryLedger()
    ledger.keys[KEY] = _principal("alpha")
    ledger.keys[KEY_RESTRICTED] = _principal("restricted", ("other",))
    ledger.keys[KEY_BROKE] = _principal("broke")
    ledger.keys[KEY_REVOKED] = _principal("revoked")
    ledger.revoked.add(KEY_REVOKED)
    ledger.budgets["ten_broke"] = 0
    return ledger


def make_gateway(
    models: dict[str, ChatModel], ledger: MemoryLedger, embedder: Embedder | None
) -> Gateway:
    """A Gateway over a fixed set of models (name → model, pinned as `name@1`)."""

    def open_model(name: str) -> tuple[str, ChatModel]:
        if name not in models:
            raise NotFound(
                f"model {name!r} does not exist; available: {', '.join(models)}",
                fix="pass one of the available models",
            )
        return f"{name}@1", models[name]

    return Gateway(
        open_model=open_model,
        model_names=lambda: sorted(models),
        ledger=ledger,
        embedder=(lambda: embedder) if embedder is not None else None,
        embedder_name=embedder.name if embedder is not None else None,
        limits=ServerLimits(max_body_bytes=MAX_BODY_BYTES),
    )


@dataclass
class Server:
    """A running gateway: its base URL and the ledger behind it."""

    url: str
    ledger: MemoryLedger
    gateway: Gateway
    embedder: Any
    keys: dict[str, str] = field(default_factory=lambda: dict(KEYS))
    max_body_bytes: int = MAX_BODY_BYTES
    retry_after_s: float = RETRY_AFTER_S

    def client(self, key: str = KEY, **options: Any) -> Any:
        """The official openai client for this server and `key`."""
        from openai import OpenAI

        return OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, **options)


@pytest.fixture(scope="session")
def tiny_chat_model() -> ChatModel:
    from feilun.models.runtimes.transformers import TransformersChatModel
    from feilun.models.tiny import build_tiny_model

    model, tokenizer = build_tiny_model("llama", seed=0)
    return TransformersChatModel(model, tokenizer, name="tiny", quantize="none")


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    from feilun.models.embedders.sentence import load_embedder
    from feilun.models.packaged import MINILM

    folder = MINILM.locate()
    if folder is None:
        pytest.skip(f"{MINILM.name} is not installed ({MINILM.install_hint})")
    return load_embedder(folder, name=MINILM.name)


@pytest.fixture(scope="session")
def server(
    tiny_chat_model: ChatModel,
    minilm: Embedder,
    serve_app: Callable[[Any], AbstractContextManager[str]],
) -> Iterator[Server]:
    """The real app under uvicorn on a free port of 127.0.0.1."""
    from feilun.serving.app import build_app

    ledger = make_ledger()
    models = {
        "tiny": tiny_chat_model,
        "tiny-paced": Paced(tiny_chat_model),
        "tiny-faulty": Faulty(tiny_chat_model),
    }
    gateway = make_gateway(models, ledger, minilm)
    with serve_app(build_app(gateway)) as url:
        yield Server(url, ledger, gateway, minilm)


# -- the real backends: databases, limiters ----------------------------------------------------


@pytest.fixture
def db(bare_db: Database) -> Database:
    """A migrated database: a SQLite file, or a fresh PostgreSQL schema."""
    upgrade(bare_db)
    return bare_db


@pytest.fixture
def redis_client() -> Iterator[Any]:
    """A client of the local Redis; skipped, with the reason, only when it is unreachable."""
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as e:
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {e}")
    yield client
    client.close()


@pytest.fixture
def redis_limiter(redis_client: Any) -> Iterator[RedisLimiter]:
    """A Redis limiter under a namespace of its own, deleted afterwards."""
    namespace = f"feilun-test:{secrets.token_hex(6)}:"
    yield RedisLimiter(redis_client, namespace)
    for key in redis_client.scan_iter(match=namespace + "*"):
        redis_client.delete(key)


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Limiter:
    """Each limiter in turn: in-process, then the local Redis."""
    if request.param == "memory":
        return MemoryLimiter()
    redis_limiter: RedisLimiter = request.getfixturevalue("redis_limiter")
    return redis_limiter


def run_race(count: int, action: Callable[[], T]) -> list[T]:
    """Run `action` in `count` threads released together; their results, in finishing order."""
    barrier = threading.Barrier(count)
    results: list[T] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        result = action()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == count
    return results


@pytest.fixture
def race() -> Callable[[int, Callable[[], Any]], list[Any]]:
    """`race(count, action)`: `action` in `count` threads released together; their results."""
    return run_race
