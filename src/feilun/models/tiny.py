"""Tiny random chat models for tests: a 2-layer width-64 model with a real small tokenizer.

The tokenizer is a byte-level BPE trained at call time on a built-in English + Chinese corpus,
with ChatML special tokens and a SmolLM2-shaped chat template, so tests exercise the same code
paths as the real model (multi-byte UTF-8, special tokens, templates) without any download.
Everything is deterministic for a given seed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

Arch = Literal["llama", "qwen2"]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512

# ChatML, the same shape as SmolLM2-Instruct's template (with a shorter default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = """\
The flywheel turns slowly at first. A team collects its manuals, tickets and chat logs, cleans
them, and builds an index. The assistant answers questions and cites its sources. People rate
the answers, correct the wrong ones, and the corrections become a new dataset. The model is
trained again, evaluated against the last version, and promoted only when it is better.

A gas utility keeps thousands of pages about pipes, valves, meters and safety procedures. When
a technician asks how to test a regulator, the answer must be exact and must say where it came
from. A hospital asks different questions: which dose, which form, which department. A traffic
bureau wants to know why a junction is congested at eight in the morning.

Small models run on a laptop. They are quick to train and cheap to serve, and with good data
they answer narrow questions well. What is the capital of France? The capital of France is
Paris. What is two plus two? Two plus two is four. Hello! How can I help you today?

数据飞轮从文档开始。团队收集手册、工单和对话记录，清洗数据，建立索引。助手回答问题并给出引用来源。
用户对回答打分，纠正错误的回答，这些纠正成为新的数据集。模型再次训练，与上一个版本比较评测，
只有更好的时候才会上线。燃气公司有大量关于管道、阀门、仪表和安全规程的资料。医院关心剂量、剂型和科室。
交通管理部门想知道为什么早上八点路口会拥堵。法国的首都是巴黎。中国的首都是北京。你好！今天我能帮你什么？
"""


@functools.cache
def _trained_tokenizer_json() -> str:
    """Train the byte-level BPE once per process; the JSON is the cache (tokenizers are mutable)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    paragraphs = [p for p in CORPUS.split("\n\n") if p.strip()]
    tokenizer.train_from_iterator(paragraphs * 4, trainer=trainer)
    return tokenizer.to_str()


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A real byte-level BPE tokenizer (~512 tokens) with ChatML specials and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    arch: Arch = "llama",
    seed: int = 0,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    context_length: int = 512,
    init_std: float = 0.02,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A random `arch` model (fp32, eval mode) and its tokenizer, deterministic for `seed`.

    A larger `init_std` (e.g. 0.3) makes an untrained model's greedy output varied rather than
    one repeated token, which makes decoding tests sharper.
    """
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tokenizer = build_tiny_tokenizer()
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": hidden_size * 2,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": context_length,
        "tie_word_embeddings": True,
        "initializer_range": init_std,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    # A forked RNG keeps the caller's global torch seed untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def save_tiny_model(folder: Path, arch: Arch = "llama", seed: int = 0) -> Path:
    """Write a standard safetensors model folder (config, weights, tokenizer, chat template)."""
    model, tokenizer = build_tiny_model(arch, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
