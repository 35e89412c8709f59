"""Weight quantization of Linear layers for CPU decoding, in PyTorch only.

Decoding a small model on a CPU is bound by reading weights from memory, so fewer bytes per
weight means more tokens per second. Every mode keeps `module(x)` a drop-in for `nn.Linear`.
(Weight-only int8 via `aten._weight_int8pack_mm` and int4 via `_weight_int4pack_mm_for_cpu`
were measured too and lost to dynamic int8 on this CPU; see benchmarks/README.md.)
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from feilun.core.errors import ConfigError

QUANTIZE_MODES = ("none", "int8")


def quantize_linear(linear: nn.Linear, mode: str | None) -> nn.Module:
    """Return `linear` converted to `mode`: "none" (as is) or "int8" (dynamic quantization)."""
    if check_quantize_mode(mode) == "int8":
        # Dynamic quantization: int8 weights (per channel), activations quantized per call;
        # fbgemm uses VNNI / AVX-512 where the CPU has them. torch warns that torch.ao moves to
        # torchao; the kernels still ship in torch 2.13 (pinned), so the warning is noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            quantized = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
                nn.Sequential(linear),
                {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig},
                dtype=torch.qint8,
            )
        module: nn.Module = quantized[0]
        return module
    return linear


def check_quantize_mode(mode: str | None) -> str:
    """Normalise `mode` (None → "none") or raise ConfigError listing the valid modes."""
    mode = mode or "none"
    if mode not in QUANTIZE_MODES:
        raise ConfigError(
            f"quantize={mode!r} is not a known mode",
            fix=f"use one of {', '.join(QUANTIZE_MODES)}",
        )
    return mode
