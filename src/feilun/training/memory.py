"""Memory pre-flight: estimate a run's peak before it starts, and refuse what cannot fit.

The estimate adds fp32 weights, gradients and AdamW moments of the trainable weights, the
activations autograd keeps per token and layer, the logits at labelled positions, and a fixed
runtime overhead. It is deliberately on the high side: a refused run costs a second, an
out-of-memory kill costs the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import psutil
import torch

from feilun.core.errors import ConfigError

MiB = 1 << 20
RUNTIME_OVERHEAD_BYTES = 600 * MiB  # torch, transformers and the tokenizer, measured on CPU
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Shape:
    """What the peak depends on."""

    parameters: int
    trainable: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int
    micro_batch_size: int
    seq_len: int
    is_full: bool


def shape_of(
    model: Any, trainable: int, micro_batch_size: int, seq_len: int, is_full: bool
) -> Shape:
    """The Shape of a loaded transformers model under the given batch settings."""
    config = model.config
    hidden = int(config.hidden_size)
    return Shape(
        parameters=sum(p.numel() for p in model.parameters()),
        trainable=trainable,
        layers=int(config.num_hidden_layers),
        hidden=hidden,
        intermediate=int(getattr(config, "intermediate_size", 4 * hidden) or 4 * hidden),
        heads=int(config.num_attention_heads),
        vocab=int(config.vocab_size),
        micro_batch_size=micro_batch_size,
        seq_len=seq_len,
        is_full=is_full,
    )


def estimate_peak_bytes(shape: Shape) -> int:
    """Estimated peak bytes of training `shape` in fp32."""
    weights = shape.parameters * FLOAT_BYTES
    optimizer = shape.trainable * FLOAT_BYTES * 3  # gradient + two AdamW moments
    tokens = shape.micro_batch_size * shape.seq_len
    # kept for backward per token and layer: ~16 hidden-wide and 4 intermediate-wide tensors,
    # plus one row of attention weights per head
    per_token_layer = 16 * shape.hidden + 4 * shape.intermediate + shape.heads * shape.seq_len
    activations = tokens * shape.layers * per_token_layer * FLOAT_BYTES
    logits = tokens * shape.vocab * FLOAT_BYTES * 3  # logits, log-softmax, their gradient
    return weights + optimizer + activations + logits + RUNTIME_OVERHEAD_BYTES


def available_bytes() -> int:
    """Free memory of the device that trains: GPU memory, else RAM plus what we already hold."""
    if torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info()
        return int(free)
    own = psutil.Process().memory_info().rss
    return int(psutil.virtual_memory().available + own)


def lora_parameter_count(model: Any, targets: list[str], rank: int) -> int:
    """Weights LoRA would add on `targets` at `rank`: r·(in + out) per adapted linear layer."""
    return sum(
        rank * (m.in_features + m.out_features)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )


def check_memory(shape: Shape, budget_bytes: int, lora_trainable: int) -> int:
    """The estimate, if it fits `budget_bytes`; else ConfigError with settings that would fit."""
    need = estimate_peak_bytes(shape)
    if need <= budget_bytes:
        return need
    fitting = next(
        (
            (text, s)
            for text, s in _smaller(shape, lora_trainable)
            if estimate_peak_bytes(s) <= budget_bytes
        ),
        None,
    )
    fix = (
        f"rerun with the overrides {fitting[0]} "
        f"(about {estimate_peak_bytes(fitting[1]) // MiB} MiB)"
        if fitting
        else "no smaller batch or sequence fits: use a smaller base model or a bigger machine"
    )
    raise ConfigError(
        f"this run needs about {need // MiB} MiB but {budget_bytes // MiB} MiB is available "
        f"(method {'full' if shape.is_full else 'lora'}, {shape.parameters / 1e6:.1f}M "
        f"parameters, micro_batch_size {shape.micro_batch_size}, max_seq_len {shape.seq_len})",
        fix,
    )


def _smaller(shape: Shape, lora_trainable: int) -> Iterator[tuple[str, Shape]]:
    """Cheaper settings, mildest first: LoRA, then halved micro batches, then shorter sequences."""
    as_lora = replace(shape, is_full=False, trainable=lora_trainable)
    if shape.is_full:
        yield "method=lora", as_lora
    batch, seq = shape.micro_batch_size, shape.seq_len
    while batch > 1 or seq > 64:
        batch, seq = (batch // 2, seq) if batch > 1 else (batch, seq // 2)
        text = f"train.micro_batch_size={batch} data.max_seq_len={seq}"
        yield text, replace(shape, micro_batch_size=batch, seq_len=seq)
        if shape.is_full:
            yield f"method=lora {text}", replace(as_lora, micro_batch_size=batch, seq_len=seq)
