"""Which weights train: LoRA adapters through PEFT, or every weight (`method: full`).

The trainable state (adapter weights, or all weights) is what checkpoints hold and what a
finished run saves: a PEFT adapter folder, or a full safetensors model folder.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import torch

from feilun.core.errors import ConfigError
from feilun.training.recipe import Recipe

logger = logging.getLogger(__name__)
TEMPLATE_FILE = "chat_template.jinja"


def check_method(recipe: Recipe) -> None:
    """Refuse `qlora` where it cannot run, naming the methods that can."""
    if recipe.method != "qlora":
        return
    has_cuda = torch.cuda.is_available()
    has_bnb = importlib.util.find_spec("bitsandbytes") is not None
    missing = [what for what, ok in (("a CUDA GPU", has_cuda), ("bitsandbytes", has_bnb)) if not ok]
    raise ConfigError(
        "method=qlora needs a CUDA GPU and bitsandbytes; "
        + (f"this machine lacks {' and '.join(missing)}" if missing else "this build has no qlora")
        + f" (recipe {recipe.recipe}, model {recipe.base_model})",
        "use `method=lora` (adapter on the fp32 model, runs anywhere) or `method=full`",
    )


def apply_method(model: Any, recipe: Recipe) -> Any:
    """The model ready to train: LoRA-wrapped (only adapters train) or whole (`full`)."""
    check_method(recipe)
    if recipe.method == "full":
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    lora = recipe.lora
    config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.targets),
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():  # peft 0.21 reads a property transformers 5 deprecated
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            return get_peft_model(model, config)
    except ValueError as e:
        linear = sorted(
            {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if _is_linear(m)}
        )
        raise ConfigError(
            f"lora.targets={lora.targets} do not match modules of {recipe.base_model}: {e}",
            f"pick from this model's linear layers: {', '.join(linear)}",
        ) from e


def _is_linear(module: Any) -> bool:
    return isinstance(module, torch.nn.Linear)


def trainable_parameters(model: Any) -> dict[str, torch.nn.Parameter]:
    """The parameters the optimizer updates, by name."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def trainable_state(model: Any) -> dict[str, torch.Tensor]:
    """Copies of the trainable weights (what a checkpoint holds), contiguous for safetensors."""
    return {n: p.detach().contiguous().clone() for n, p in trainable_parameters(model).items()}


def load_trainable_state(model: Any, state: dict[str, torch.Tensor]) -> None:
    """Put checkpointed trainable weights back; every trainable weight must be present."""
    params = trainable_parameters(model)
    missing = sorted(set(params) - set(state))
    if missing:
        raise ConfigError(
            f"checkpoint lacks {len(missing)} trainable weights, e.g. {missing[0]}",
            "the recipe's method or lora settings changed since the checkpoint; resume with the "
            "run's own recipe",
        )
    with torch.no_grad():
        for name, parameter in params.items():
            parameter.copy_(state[name])


def save_trained(model: Any, tokenizer: Any, template: str, folder: Path) -> Path:
    """Write the result: a PEFT adapter folder, or a full model folder; both with the template."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(folder)
        (folder / "README.md").unlink(missing_ok=True)  # PEFT's empty model-card stub
    else:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
    (folder / TEMPLATE_FILE).write_text(template, encoding="utf-8")
    return folder
