"""A safety judge on a causal LM's hidden states: a linear head over its first layers.

The base model (e.g. the packaged SmolLM2-135M-Instruct) is cut after `layer` decoder layers.
A text, wrapped as a ChatML user turn, is encoded once; the head reads the last token's state
and the mean state of the text's own tokens. The judge's logit may be stacked with a second
classifier's log-odds (the n-gram layer). Each language's threshold is saved with the head;
only the head is saved (JSON), the base weights are loaded from their registered source.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feilun.core import registry as plugins
from feilun.core.errors import ArtifactError
from feilun.core.files import write_atomically

FORMAT = "feilun-safety-judge/1"
JUDGE_FILE = "judge.json"  # in the workspace's safety folder, beside the n-gram classifier
PREFIX = "<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n"
MAX_TEXT_TOKENS = 128
_TRAIN_AGAIN = "train it with `feilun safety train --file F.jsonl --base MODEL`"


class Backbone:
    """The first `layer` decoder layers of a causal LM (cut in place) and its tokenizer.

    A text's features: the last token's state and the mean state of the text's own tokens.
    """

    def __init__(self, model: Any, tokenizer: Any, layer: int) -> None:
        import torch

        decoder = model.model  # the decoder stack of a *ForCausalLM
        if not 1 <= layer <= len(decoder.layers):
            raise ArtifactError(
                f"the judge reads layer {layer}, the base model has {len(decoder.layers)} layers",
                _TRAIN_AGAIN,
            )
        decoder.layers = decoder.layers[:layer]
        decoder.config.num_hidden_layers = layer
        decoder.norm = torch.nn.Identity()  # states of layer `layer` as they are
        self.decoder = decoder.eval()
        self.tokenizer = tokenizer
        self.layer = layer
        self.hidden_size = int(decoder.config.hidden_size)
        self._prefix = tokenizer(PREFIX, add_special_tokens=False)["input_ids"]
        self._suffix = tokenizer(SUFFIX, add_special_tokens=False)["input_ids"]

    def features(self, texts: Sequence[str], batch_size: int = 16) -> Any:
        """The features of each text, in order: a float32 tensor (N, 2 * hidden)."""
        import torch

        encoded = [
            self._prefix
            + self.tokenizer(t, add_special_tokens=False)["input_ids"][:MAX_TEXT_TOKENS]
            + self._suffix
            for t in texts
        ]
        out = torch.zeros(len(texts), 2 * self.hidden_size)
        order = sorted(range(len(texts)), key=lambda k: len(encoded[k]))  # little padding
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                width = max(len(encoded[k]) for k in batch)
                ids = torch.zeros(len(batch), width, dtype=torch.long)
                for row, k in enumerate(batch):
                    ids[row, : len(encoded[k])] = torch.tensor(encoded[k])
                # Right padding under causal attention: pads never reach the real tokens.
                states = self.decoder(input_ids=ids, use_cache=False).last_hidden_state
                for row, k in enumerate(batch):
                    end = len(encoded[k])
                    text = states[row, len(self._prefix) : end - len(self._suffix)]
                    out[k] = torch.cat([text.mean(0), states[row, end - 1]])
        return out


@dataclass
class SafetyJudge:
    """A trained head on a backbone: P(unsafe) logits, thresholds per language.

    `stack` (judge weight, second weight, bias) combines the head's logit with `second`, the
    log-odds of unsafe of another classifier; `language_of` detects a text's language
    when `predict` is not told it.
    """

    backbone: Backbone
    weights: list[float]  # one per feature
    bias: float
    language_of: Callable[[str], str]
    thresholds: dict[str, float] = field(default_factory=dict)  # language -> logit cut
    category: str = "other_prohibited"
    stack: tuple[float, float, float] | None = None
    second: Callable[[str], float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        import torch

        if len(self.weights) != 2 * self.backbone.hidden_size:
            raise ArtifactError(
                f"the judge's head has {len(self.weights)} weights, its base model gives "
                f"{2 * self.backbone.hidden_size} features (another base model?)",
                _TRAIN_AGAIN,
            )
        if self.stack is not None and self.second is None:
            raise ArtifactError(
                "the judge is stacked on the n-gram classifier, which is not given",
                "keep the workspace's classifier.json, or train the judge again",
            )
        self._w = torch.tensor(self.weights)

    def logits(self, texts: Sequence[str]) -> list[float]:
        """The final unsafe logit of each text (stacked when the judge is)."""
        head = (self.backbone.features(texts) @ self._w + self.bias).tolist()
        if self.stack is None or self.second is None:
            return [float(x) for x in head]
        a, c, b = self.stack
        return [a * x + c * self.second(t) + b for x, t in zip(head, texts, strict=True)]

    def predict(self, text: str, language: str | None = None) -> tuple[str | None, float]:
        """The judge's risk and the text's unsafe score, 0.5 at the language's threshold."""
        cut = self.thresholds.get(language or self.language_of(text), 0.0)
        return self.category, 1 / (1 + math.exp(-(self.logits([text])[0] - cut)))

    def save(self, path: Path) -> None:
        """Write the head, thresholds and the base model's location as JSON, atomically."""
        values = {
            "format": FORMAT,
            "layer": self.backbone.layer,
            "category": self.category,
            "thresholds": self.thresholds,
            "stack": self.stack,
            "bias": self.bias,
            "weights": self.weights,
            "meta": self.meta,
        }
        write_atomically(path, json.dumps(values, ensure_ascii=False, separators=(",", ":")))


def load_judge(
    path: Path,
    cache_dir: Path,
    language_of: Callable[[str], str],
    second: Callable[[str], float] | None = None,
) -> SafetyJudge:
    """A judge saved by `SafetyJudge.save`, on its base model; ArtifactError when it is not one.

    `meta["base"]` names the base model's source and location (as registered when trained);
    `second` is the stacked classifier's log-odds of unsafe, needed when the judge was stacked.
    """
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactError(f"cannot read the safety judge {str(path)!r}: {e}", _TRAIN_AGAIN) from e
    if not isinstance(values, dict) or values.get("format") != FORMAT:
        found = values.get("format") if isinstance(values, dict) else None
        raise ArtifactError(
            f"{path} is not a Feilun safety judge (format {FORMAT!r}, found {found!r})",
            _TRAIN_AGAIN,
        )
    try:
        base = values["meta"]["base"]
        source = plugins.lookup("model_sources", base["source"])
        model, tokenizer = source.load(base["location"], cache_dir)
        stack = values["stack"]
        return SafetyJudge(
            Backbone(model, tokenizer, int(values["layer"])),
            weights=[float(w) for w in values["weights"]],
            bias=float(values["bias"]),
            language_of=language_of,
            thresholds={k: float(v) for k, v in values["thresholds"].items()},
            category=str(values["category"]),
            stack=None if stack is None else (float(stack[0]), float(stack[1]), float(stack[2])),
            second=second,
            meta=values["meta"],
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path} is a damaged safety judge: {e!r}", _TRAIN_AGAIN) from e
