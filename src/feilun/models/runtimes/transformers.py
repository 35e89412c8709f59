"""The default local runtime: a transformers causal LM behind `ChatModel`, tuned for CPU.

Generation is our own loop, not `model.generate`: Llama-family models run the lean forward of
`models.lean` (fused matmuls, static KV cache, optional int8 weights); others run the model's
own forward with a dynamic cache. One lock serialises use of the model; `chat_batch` decodes
several conversations in one batch (left padding) for throughput.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from feilun.core import registry as plugins
from feilun.core.errors import ConfigError, InputTooLong
from feilun.core.protocols import Completion, Delta, FinishReason, GenerationParams, Usage
from feilun.core.records import BaseModel, Message
from feilun.models.decoding import TextStream, choose_next
from feilun.models.lean import LeanLlama, supports_lean
from feilun.models.quantize import check_quantize_mode

logger = logging.getLogger(__name__)

# int8 dynamic quantization: ~2x the fp32 decode speed on CPU, same greedy answers on SmolLM2
# (see benchmarks/README.md). quantize="none" keeps exact fp32: activations are quantised
# per tensor, so int8 greedy answers can differ slightly from fp32 and between batch mates.
DEFAULT_QUANTIZE = "int8"
OPTIONS = ("quantize", "threads")
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>")


@dataclass
class _Run:
    """Per-row progress and timings of one generation call."""

    prompt_ids: list[list[int]]
    streams: list[TextStream]
    counts: list[int] = field(default_factory=list)
    reasons: list[FinishReason | None] = field(default_factory=list)
    prefill_s: float = 0.0
    decode_s: float = 0.0


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
    ) -> None:
        self.name = name
        self.quantize = check_quantize_mode(DEFAULT_QUANTIZE if quantize is None else quantize)
        self._model = model.eval()
        self._tokenizer = tokenizer
        self._template = chat_template or getattr(tokenizer, "chat_template", None)
        config = model.config
        self.context_length = int(
            context_length or getattr(config, "max_position_embeddings", 0) or 2048
        )
        self._eos_ids = _end_token_ids(model, tokenizer)
        self._pad_id = tokenizer.pad_token_id
        if self._pad_id is None:
            self._pad_id = min(self._eos_ids) if self._eos_ids else 0
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
        self._lock = threading.Lock()

    # -- ChatModel ------------------------------------------------------------------------

    def chat(self, messages: Sequence[Message], params: GenerationParams) -> Completion:
        """Generate a whole answer."""
        return self.chat_batch([messages], params)[0]

    def stream(self, messages: Sequence[Message], params: GenerationParams) -> Iterator[Delta]:
        """Generate piece by piece; the last Delta carries finish_reason and usage.

        Bad input (no template, too long) raises here, before the first Delta is produced.
        """
        prompt = self._prompt_ids(messages, params)
        return self._stream(prompt, params)

    def count_tokens(self, messages: Sequence[Message]) -> int:
        """Prompt tokens these messages take, chat template included."""
        return len(self._render(messages))

    def _stream(self, prompt: list[int], params: GenerationParams) -> Iterator[Delta]:
        run = self._new_run([prompt], params)
        for events in self._generate(run, params):
            for _, piece, reason in events:
                if reason is not None:
                    usage = Usage(prompt_tokens=len(prompt), completion_tokens=run.counts[0])
                    yield Delta(text=piece, finish_reason=reason, usage=usage)
                elif piece:
                    yield Delta(text=piece)

    # -- batching -------------------------------------------------------------------------

    def chat_batch(
        self, conversations: Sequence[Sequence[Message]], params: GenerationParams
    ) -> list[Completion]:
        """Answer several conversations in one batched decode (left padded); order kept."""
        if not conversations:
            return []
        prompts = [self._prompt_ids(messages, params) for messages in conversations]
        run = self._new_run(prompts, params)
        for _ in self._generate(run, params):
            pass
        return [
            Completion(
                text=run.streams[row].text,
                finish_reason=run.reasons[row] or "length",
                usage=Usage(prompt_tokens=len(prompts[row]), completion_tokens=run.counts[row]),
                prefill_s=run.prefill_s,
                decode_s=run.decode_s,
            )
            for row in range(len(prompts))
        ]

    # -- internals ------------------------------------------------------------------------

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

    def _new_run(self, prompts: list[list[int]], params: GenerationParams) -> _Run:
        def decode(ids: list[int]) -> str:
            return str(
                self._tokenizer.decode(
                    ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
            )

        rows = len(prompts)
        return _Run(
            prompt_ids=prompts,
            streams=[TextStream(decode, params.stop) for _ in prompts],
            counts=[0] * rows,
            reasons=[None] * rows,
        )

    def _generate(
        self, run: _Run, params: GenerationParams
    ) -> Iterator[list[tuple[int, str, FinishReason | None]]]:
        """Decode all rows of `run`; yields per step the (row, new text, finish) events."""
        rows, width = len(run.prompt_ids), max(len(p) for p in run.prompt_ids)
        generator = torch.Generator()
        generator.manual_seed(params.seed if params.seed is not None else secrets.randbits(63))
        with self._lock:
            started = time.perf_counter()
            logits, step_fn = self._prefill(run.prompt_ids, width + params.max_tokens)  # (B, V)
            run.prefill_s = time.perf_counter() - started
            done = [False] * rows
            for step in range(params.max_tokens):
                with torch.inference_mode():
                    tokens = choose_next(logits, params.temperature, params.top_p, generator)
                events = []
                for row, token in enumerate(tokens.tolist()):
                    if not done[row]:
                        piece, reason = self._advance(run, row, token, params.max_tokens)
                        done[row] = reason is not None
                        events.append((row, piece, reason))
                run.decode_s = time.perf_counter() - started - run.prefill_s
                yield events
                if all(done):
                    break
                logits = step_fn(tokens, step)  # (B, V)

    def _advance(
        self, run: _Run, row: int, token: int, max_tokens: int
    ) -> tuple[str, FinishReason | None]:
        """Feed one sampled token to its row: the releasable text and the finish, if any."""
        run.counts[row] += 1
        stream = run.streams[row]
        reason: FinishReason | None
        if token in self._eos_ids:
            piece, reason = "", "stop"
        else:
            piece = stream.push(token)
            reason = "stop" if stream.is_stopped else None
            if reason is None and run.counts[row] >= max_tokens:
                reason = "length"
        if reason is not None:
            piece += stream.finish()
            run.reasons[row] = reason
        return piece, reason

    def _prefill(
        self, prompts: list[list[int]], max_len: int
    ) -> tuple[torch.Tensor, Callable[[torch.Tensor, int], torch.Tensor]]:
        """Run the left-padded prompts; last logits (B, V) and step(tokens (B,), step) -> (B, V)."""
        rows, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.full((rows, width), self._pad_id, dtype=torch.long)  # (B, T)
        valid = torch.ones((rows, max_len), dtype=torch.bool)  # (B, S): False on padding
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            valid[row, : width - len(prompt)] = False
        # Positions count real tokens only, so a padded row sees the same positions as alone.
        positions = (valid[:, :width].long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        lengths = torch.tensor([len(p) for p in prompts])[:, None]  # (B, 1)
        mask = None if all(len(p) == width for p in prompts) else valid
        if self._lean is not None:
            lean = self._lean
            with torch.inference_mode():
                cache = lean.new_cache(rows, max_len)
                logits = lean.forward(ids, positions, mask, cache)

            def lean_step(tokens: torch.Tensor, step: int) -> torch.Tensor:
                with torch.inference_mode():
                    return lean.forward(tokens[:, None], lengths + step, mask, cache)

            return logits, lean_step

        from transformers import DynamicCache

        model, dynamic = self._model, DynamicCache(config=self._model.config)

        def hf_forward(ids: torch.Tensor, positions: torch.Tensor, end: int) -> torch.Tensor:
            with torch.inference_mode():
                out = model(
                    input_ids=ids,
                    attention_mask=valid[:, :end].long(),
                    position_ids=positions,
                    past_key_values=dynamic,
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits: torch.Tensor = out.logits[:, -1]  # (B, V)
                return logits

        def hf_step(tokens: torch.Tensor, step: int) -> torch.Tensor:
            return hf_forward(tokens[:, None], lengths + step, width + step + 1)

        return hf_forward(ids, positions, width), hf_step


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


def load_runtime(record: BaseModel, cache_dir: Path) -> TransformersChatModel:
    """Entry point of the "transformers" runtime: load a registered model's weights.

    `record.meta["runtime_options"]` may set `quantize` ("int8" or "none") and `threads`.
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
    return TransformersChatModel(
        model,
        tokenizer,
        name=record.name,
        chat_template=record.chat_template or None,
        context_length=record.context_length or None,
        **options,
    )
