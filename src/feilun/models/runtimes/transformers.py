"""The default local runtime: a transformers causal LM behind `ChatModel`, tuned for CPU.

Generation is our own loop, not `model.generate`: Llama-family models run the lean forward of
`models.lean` (fused matmuls, static KV cache, optional int8 weights); others run the model's
own forward with a dynamic cache. Concurrent callers of a lean model share forward passes:
a scheduler thread batches their decodes continuously (`models.batching`). Other models run
one request at a time under a lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from feilun.core import registry as plugins
from feilun.core.errors import ConfigError, InputTooLong
from feilun.core.protocols import Completion, Delta, GenerationParams
from feilun.core.records import Adapter, BaseModel, Message
from feilun.models.batching import Batcher, Request, collect, new_request, sample
from feilun.models.lean import LeanLlama, supports_lean
from feilun.models.quantize import check_quantize_mode

logger = logging.getLogger(__name__)

# Exact weights by default. quantize="int8" (dynamic quantization) decodes ~4x faster on the
# CPU (benchmarks/README.md), but it scales activations per tensor, and outlier activations
# then wreck answers: measured on SmolLM2-135M, a 1000-token passage question got a relevant
# answer in fp32 and a looping definition in int8; int8 on the lm_head alone turned "What is
# the capital of France?" into French gibberish. Opt in per model (runtime_options) where
# speed matters more than fidelity.
DEFAULT_QUANTIZE = "none"
OPTIONS = ("quantize", "threads")
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>")


class GreenList(Protocol):
    """A text watermark (`feilun.governance.watermark.Watermark`): δ and each step's green ids."""

    @property
    def delta(self) -> float:
        """Logit bias added to green tokens."""
        ...

    def green_mask(self, previous: int, size: int) -> bytes:
        """One byte per token id below `size`: 1 when green after `previous`."""
        ...


class TransformersChatModel:
    """A local causal LM answering chat messages through its chat template."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        chat_template: str | None = None,
        context_length: int | None = None,
        quantize: str | None = None,
        threads: int | None = None,
        watermark: GreenList | None = None,
        use_watermark: bool = True,
    ) -> None:
        self.name = name
        self.watermark = watermark  # the deployment's green list, when it has a key
        # whether answers are watermarked when GenerationParams.watermark is None (per request)
        self.use_watermark = use_watermark
        self.quantize = check_quantize_mode(DEFAULT_QUANTIZE if quantize is None else quantize)
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._template = chat_template or getattr(tokenizer, "chat_template", None)
        config = model.config
        self.context_length = int(
            context_length or getattr(config, "max_position_embeddings", 0) or 2048
        )
        self._eos_ids = frozenset(_end_token_ids(model, tokenizer))
        if threads:
            torch.set_num_threads(threads)
        self._lean = LeanLlama(model, self.quantize) if supports_lean(model) else None
        if self._lean is None and self.quantize != "none":
            logger.warning(
                "%s: quantize=%s applies to Llama-family models only; %s runs in its own dtype",
                name,
                self.quantize,
                config.model_type,
            )
            self.quantize = "none"
        self._batcher = Batcher(self._lean, name, threads) if self._lean is not None else None
        self._lock = threading.Lock()  # serialises the model when there is no batcher

    # -- ChatModel ------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """Generate a whole answer."""
        return collect(*self._start(self._prompt_ids(messages, params), params))

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Generate piece by piece; the last Delta carries finish_reason and usage.

        Bad input (no template, too long) raises here, before the first Delta is produced.
        Generation starts at the first `next()`; closing the iterator early stops it.
        """
        prompt = self._prompt_ids(messages, params)

        def deltas() -> Iterator[Delta]:
            yield from self._start(prompt, params)[1]

        return deltas()

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens these messages take, chat template included."""
        return len(self._render(messages))

    def encode(self, text: str) -> list[int]:
        """The token ids of plain `text` (no special tokens), e.g. for watermark detection."""
        return [int(i) for i in self._tokenizer(text, add_special_tokens=False)["input_ids"]]

    def chat_batch(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams
    ) -> list[Completion]:
        """Answer several conversations, decoded together; order kept."""
        prompts = [self._prompt_ids(messages, params) for messages in conversations]
        started = [self._start(prompt, params) for prompt in prompts]
        return [collect(request, deltas) for request, deltas in started]

    # -- internals ------------------------------------------------------------------------

    def _start(
        self, prompt: list[int], params: GenerationParams
    ) -> tuple[Request, Iterator[Delta]]:
        """Begin generating for `prompt`: the request and the iterator of its Deltas."""

        def decode(ids: list[int]) -> str:
            return str(
                self._tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
            )

        bias = self._watermark_bias(params)
        request = new_request(prompt, params, decode, self._eos_ids, bias)
        if self._batcher is None:
            return request, self._generate_alone(request)
        self._batcher.submit(request)
        return request, request.iterate()

    def _watermark_bias(
        self, params: GenerationParams
    ) -> Callable[[int, torch.Tensor], torch.Tensor] | None:
        """Adds δ to the logits of the tokens green after the previous one (None: no watermark).

        `params.watermark` asks for it or not per request; None keeps the model's default.
        End tokens are never favoured: a green end token would cut answers short.
        """
        watermark = self.watermark
        wanted = self.use_watermark if params.watermark is None else params.watermark
        if not wanted:
            return None
        if watermark is None:
            if params.watermark:
                logger.warning("%s: a watermark was asked for, but no key was given", self.name)
            return None
        end_ids = torch.tensor(sorted(self._eos_ids), dtype=torch.long)

        def bias(previous: int, logits: torch.Tensor) -> torch.Tensor:
            raw = bytearray(watermark.green_mask(previous, logits.shape[-1]))
            mask = torch.frombuffer(raw, dtype=torch.bool)  # (V,)
            mask[end_ids] = False
            return logits + watermark.delta * mask

        return bias

    def _generate_alone(self, request: Request) -> Iterator[Delta]:
        """Decode `request` by itself (model's own forward, dynamic cache), under the lock."""
        from transformers import DynamicCache

        model, cache = self._model, DynamicCache(config=self._model.config)
        ids = torch.tensor([request.prompt])  # (1, T)
        with self._lock:
            started = time.perf_counter()
            while not request.is_done:
                with torch.inference_mode():
                    out = model(
                        input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1
                    )
                    token = sample(out.logits[:, -1], [request])[0]  # logits (1, V)
                if not request.decode_started:
                    request.decode_started = time.perf_counter()
                    request.prefill_s = request.decode_started - started
                if (delta := request.advance(token)) is not None:
                    yield delta
                ids = torch.tensor([[token]])  # (1, 1)

    def _render(self, messages: Sequence[Message]) -> list[int]:
        if not self._template:
            raise ConfigError(
                f"model {self.name!r} has no chat template",
                fix="pass chat_template= to the runtime, or register the model with its "
                "chat template (a Jinja ChatML template works for most instruct models)",
            )
        if not messages:
            raise ConfigError("messages is empty", fix="send at least one user message")
        ids = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            chat_template=self._template,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        return [int(i) for i in ids]

    def _prompt_ids(self, messages: Sequence[Message], params: GenerationParams) -> list[int]:
        ids = self._render(messages)
        limit = self.context_length
        if len(ids) >= limit:
            raise InputTooLong(
                f"prompt is {len(ids)} tokens > context {limit} of {self.name}",
                fix="shorten the prompt (fewer or shorter messages)",
            )
        if len(ids) + params.max_tokens > limit:
            raise InputTooLong(
                f"prompt is {len(ids)} tokens + max_tokens {params.max_tokens} > context "
                f"{limit} of {self.name}",
                fix="shorten the prompt or lower max_tokens",
            )
        return ids


def _end_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end an answer: the tokenizer's EOS, the generation config's, ChatML ends."""
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in _END_TOKENS if token in vocab)
    return ids


def load_runtime(
    record: BaseModel,
    cache_dir: Path,
    adapter: Adapter | None = None,
    watermark: GreenList | None = None,
    use_watermark: bool = True,
) -> TransformersChatModel:
    """Entry point of the "transformers" runtime: load a registered model's weights.

    `record.meta["runtime_options"]` may set `quantize` ("int8" or "none") and `threads`.
    An `adapter` is merged into the base weights (served as fast as the base) and its chat
    template, the one it was trained with, renders the prompts. A `watermark` marks every
    answer, or with `use_watermark=False` only those whose params ask for it (a tenant's
    policy; see `feilun.governance.watermark`).
    """
    options: dict[str, Any] = dict(record.meta.get("runtime_options") or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown runtime option(s) {', '.join(unknown)} on model {record.ref}",
            fix=f"valid options of runtime 'transformers': {', '.join(OPTIONS)}",
        )
    source = plugins.lookup("model_sources", record.source)
    model, tokenizer = source.load(record.location, cache_dir)
    if adapter is not None:
        from feilun.models.merge import merge_adapter

        model = merge_adapter(model, adapter)
    return TransformersChatModel(
        model,
        tokenizer,
        name=f"{record.name}:{adapter.name}" if adapter else record.name,
        chat_template=(adapter and adapter.chat_template) or record.chat_template or None,
        context_length=record.context_length or None,
        watermark=watermark,
        use_watermark=use_watermark,
        **options,
    )
