"""The registered base model a recipe trains: its record, weights, tokenizer and chat template."""

from __future__ import annotations

import logging
from typing import Any

from feilun.core import registry as plugins
from feilun.core.errors import ConfigError
from feilun.core.records import BaseModel
from feilun.models.registry import ModelRegistry
from feilun.training.recipe import Recipe

logger = logging.getLogger(__name__)


def load_base_model(models: ModelRegistry, ref: str) -> tuple[BaseModel, Any, Any]:
    """The base model's record, its fp32 weights (train mode) and tokenizer.

    An unknown reference fails listing the registered models.
    """
    record = models.get(ref)
    source = plugins.lookup("model_sources", record.source)
    logger.info("loading %s from %s", record.ref, record.location)
    model, tokenizer = source.load(record.location, models.cache_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.use_cache = False
    return record, model.train(), tokenizer


def chat_template_of(recipe: Recipe, base: BaseModel, tokenizer: Any) -> str:
    """The recipe's template, else the registered model's, else its tokenizer's."""
    template = recipe.data.chat_template or base.chat_template or tokenizer.chat_template
    if not template:
        raise ConfigError(
            f"base model {base.ref} has no chat template, so chat rows cannot be rendered",
            "set `data.chat_template` in the recipe (a Jinja template; ChatML fits most "
            "instruct models), or register the model from a folder whose tokenizer has one",
        )
    return str(template)
