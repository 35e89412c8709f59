"""Text watermark (Kirchenbauer et al. 2023): a keyed green list per step, and its detection.

At each generation step the vocabulary is split by the previous token: a token is *green* when
its byte in SHAKE-256(HMAC-SHA256(deployment key, previous token id)) is below γ·256, so about
a share γ of the vocabulary is green, a different share after every token, and only the key
holder can tell which. Generation adds δ to the green tokens' logits (the transformers runtime
applies `Watermark.green_mask`); the text then holds more green tokens than chance. Detection
re-tokenises the text with the same tokenizer, counts green tokens among the T scored
(previous, token) pairs and computes z = (green − γT) / sqrt(Tγ(1 − γ)): human text and
text generated without the key score z ≈ 0 ± 1. Each distinct pair is scored once, so
repetitive text cannot inflate z. γ is used at a resolution of 1/256.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from feilun.core.errors import BadInput, ConfigError

if TYPE_CHECKING:
    from feilun.core.settings import Settings

DEFAULT_GAMMA = 0.25
DEFAULT_DELTA = 2.0
DEFAULT_THRESHOLD = 4.0  # z; one-sided p ≈ 3e-5 per text under no watermark
MIN_TOKENS = 16  # fewer scored tokens cannot give a meaningful z
_DOMAIN = b"feilun-watermark:"  # separates these MACs from the label key's other uses


@dataclass(frozen=True)
class Watermark:
    """A deployment's watermark: its key, green share `gamma` and logit bias `delta`."""

    key: bytes
    gamma: float = DEFAULT_GAMMA
    delta: float = DEFAULT_DELTA

    def __post_init__(self) -> None:
        if not 0 < self.cutoff < 256:
            raise ConfigError(
                f"watermark gamma {self.gamma} leaves no green (or no red) tokens",
                "set watermark_gamma between 0.01 and 0.99 (0.25 is the usual)",
            )
        if self.delta <= 0:
            raise ConfigError(f"watermark delta {self.delta} is not positive", "use e.g. 2.0")

    @property
    def cutoff(self) -> int:
        """A token is green when its byte is below this."""
        return round(self.gamma * 256)

    @property
    def share(self) -> float:
        """The green share actually used (γ at 1/256 resolution)."""
        return self.cutoff / 256

    def _draws(self, previous: int, size: int) -> bytes:
        seed = hmac.new(self.key, _DOMAIN + str(previous).encode(), hashlib.sha256).digest()
        return hashlib.shake_256(seed).digest(size)

    def green_mask(self, previous: int, size: int) -> bytes:
        """One byte per token id below `size`: 1 when it is green after `previous`, else 0."""
        table = bytes(1 if value < self.cutoff else 0 for value in range(256))
        return self._draws(previous, size).translate(table)

    def count_green(self, pairs: Sequence[tuple[int, int]]) -> int:
        """How many (previous, token) pairs have a green token."""
        wanted: dict[int, list[int]] = {}
        for previous, token in pairs:
            wanted.setdefault(previous, []).append(token)
        green = 0
        for previous, tokens in wanted.items():
            draws = self._draws(previous, max(tokens) + 1)
            green += sum(1 for token in tokens if draws[token] < self.cutoff)
        return green


@dataclass(frozen=True)
class Detection:
    """The outcome of testing one text: z-score, green share and verdict."""

    z: float
    green: int
    scored: int
    gamma: float
    threshold: float

    @property
    def green_fraction(self) -> float:
        """Share of scored tokens that are green (γ expected without the watermark)."""
        return self.green / self.scored

    @property
    def is_watermarked(self) -> bool:
        """Whether z reaches the threshold."""
        return self.z >= self.threshold

    @property
    def message(self) -> str:
        """The verdict in words, honest about what a negative result means."""
        if self.is_watermarked:
            return f"watermark detected with this deployment's key (z = {self.z:.2f})"
        return (
            f"no watermark detected with this deployment's key (z = {self.z:.2f} < "
            f"{self.threshold:g}): the text was not generated here with the watermark on, was "
            "edited heavily, or was watermarked with another key — these cannot be told apart"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON output."""
        return {
            "z": round(self.z, 4),
            "green_fraction": round(self.green_fraction, 4),
            "green": self.green,
            "scored_tokens": self.scored,
            "gamma": self.gamma,
            "threshold": self.threshold,
            "watermarked": self.is_watermarked,
            "message": self.message,
        }


def detect(
    token_ids: Sequence[int],
    watermark: Watermark,
    threshold: float = DEFAULT_THRESHOLD,
    min_tokens: int = MIN_TOKENS,
) -> Detection:
    """Score `token_ids` (the text re-tokenised by the generating model's tokenizer).

    Each distinct (previous, token) pair counts once; BadInput when fewer than `min_tokens`.
    """
    pairs = list(dict.fromkeys(itertools.pairwise(token_ids)))
    if len(pairs) < min_tokens:
        raise BadInput(
            f"text too short for watermark detection: {len(pairs)} scored tokens, the minimum "
            f"is {min_tokens}",
            "give a longer text (about 200 tokens gives a confident verdict)",
        )
    green, scored, gamma = watermark.count_green(pairs), len(pairs), watermark.share
    z = (green - gamma * scored) / math.sqrt(scored * gamma * (1 - gamma))
    return Detection(z, green, scored, gamma, threshold)


def deployment_watermark(settings: Settings, create: bool = False) -> Watermark:
    """The workspace's watermark: its label key (`safety/label.key`) and γ, δ from settings.

    With `create`, the key is made on first use; otherwise ConfigError when there is none.
    """
    from feilun.governance.labels import load_or_create_key
    from feilun.governance.workspace import LABEL_KEY_FILE, SAFETY_DIR

    path = settings.workspace / SAFETY_DIR / LABEL_KEY_FILE
    if not create and not path.is_file():
        raise ConfigError(
            f"no deployment key at {path}: nothing was watermarked in this workspace",
            "turn the watermark on (watermark = true in feilun.toml, or FEILUN_WATERMARK=1) "
            "before generating; detection needs the same workspace's key",
        )
    return Watermark(load_or_create_key(path), settings.watermark_gamma, settings.watermark_delta)
