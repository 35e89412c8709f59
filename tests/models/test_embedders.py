"""The sentence embedder against a reference computed with plain transformers, as
sentence-transformers defines all-MiniLM-L6-v2: BERT, mean pooling over real tokens, L2 norm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from feilun.core import registry as plugins
from feilun.core.errors import ArtifactError
from feilun.core.protocols import Embedder
from feilun.models.embedders.sentence import SentenceEmbedder, load_embedder, pooling_mode
from feilun.models.packaged import MINILM

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The girl is carrying a baby.",
    "数据飞轮从文档开始。",
]


@pytest.fixture(scope="module")
def folder() -> Path:
    path = MINILM.locate()
    if path is None:
        pytest.skip(f"{MINILM.name} is not installed ({MINILM.install_hint})")
    return path


@pytest.fixture(scope="module")
def embedder(folder: Path) -> SentenceEmbedder:
    return load_embedder(folder, name=MINILM.name)


def _reference(folder: Path, texts: list[str]) -> torch.Tensor:
    """sentence-transformers' recipe for this model, written out with transformers."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        tokens = model(**batch)[0]  # (B, T, H)
    mask = batch["attention_mask"].unsqueeze(-1).expand(tokens.size()).float()
    pooled = torch.sum(tokens * mask, 1) / torch.clamp(mask.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def test_vectors_match_the_reference(folder: Path, embedder: SentenceEmbedder) -> None:
    vectors = torch.tensor(embedder.embed(SENTENCES))
    assert vectors.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(vectors, _reference(folder, SENTENCES), atol=1e-5, rtol=1e-4)
    assert torch.linalg.norm(vectors, dim=1) == pytest.approx([1.0] * len(SENTENCES), abs=1e-5)


def test_a_text_alone_or_in_a_batch_gives_the_same_vector(embedder: SentenceEmbedder) -> None:
    alone = torch.tensor(embedder.embed([SENTENCES[0]])[0])
    batched = torch.tensor(embedder.embed(SENTENCES))
    torch.testing.assert_close(batched[0], alone, atol=1e-5, rtol=1e-4)
    small = SentenceEmbedder(embedder._model, embedder._tokenizer, name="x", batch_size=2)
    torch.testing.assert_close(torch.tensor(small.embed(SENTENCES)), batched, atol=1e-5, rtol=1e-4)


def test_similar_sentences_are_closer(embedder: SentenceEmbedder) -> None:
    food, bread, horse, baby, _ = (torch.tensor(v) for v in embedder.embed(SENTENCES))
    assert food @ bread > food @ horse
    assert food @ bread > food @ baby
    assert food @ bread > 0.5  # the published model rates this pair as clearly similar


def test_registered_and_satisfies_the_protocol(folder: Path) -> None:
    loaded = plugins.lookup("embedders", "sentence")(folder, name="minilm")
    assert isinstance(loaded, Embedder)
    assert (loaded.name, loaded.dimension) == ("minilm", 384)


def test_count_tokens_counts_special_tokens_and_truncates(embedder: SentenceEmbedder) -> None:
    assert embedder.count_tokens(["hello world"]) == 4  # [CLS] hello world [SEP]
    assert embedder.count_tokens(["word " * 1000]) == embedder.max_seq_length


def test_pooling_config_is_read(tmp_path: Path, folder: Path) -> None:
    assert pooling_mode(folder) == "mean_tokens"
    (tmp_path / "1_Pooling").mkdir()
    config = tmp_path / "1_Pooling" / "config.json"
    config.write_text('{"pooling_mode_cls_token": true}')
    assert pooling_mode(tmp_path) == "cls_token"
    config.write_text('{"pooling_mode_cls_token": true, "pooling_mode_max_tokens": true}')
    with pytest.raises(ArtifactError, match="several poolings"):
        pooling_mode(tmp_path)
    assert pooling_mode(tmp_path / "nothing") == "mean_tokens"


def test_cls_and_max_pooling(folder: Path, embedder: SentenceEmbedder) -> None:
    texts = SENTENCES[:2]
    batch = embedder._tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = embedder._model(**batch).last_hidden_state  # (B, T, H)
    cls = SentenceEmbedder(embedder._model, embedder._tokenizer, name="c", pooling="cls_token")
    want = torch.nn.functional.normalize(hidden[:, 0], dim=1)
    torch.testing.assert_close(torch.tensor(cls.embed(texts)), want, atol=1e-5, rtol=1e-4)
    mx = SentenceEmbedder(embedder._model, embedder._tokenizer, name="m", pooling="max_tokens")
    masked = hidden.masked_fill(batch["attention_mask"].unsqueeze(-1) == 0, -1e9)
    want = torch.nn.functional.normalize(masked.max(dim=1).values, dim=1)
    torch.testing.assert_close(torch.tensor(mx.embed(texts)), want, atol=1e-5, rtol=1e-4)


def test_bad_folder_and_pooling_are_artifact_errors(tmp_path: Path, embedder: Any) -> None:
    with pytest.raises(ArtifactError, match="no config.json"):
        load_embedder(tmp_path)
    with pytest.raises(ArtifactError, match="not supported"):
        SentenceEmbedder(embedder._model, embedder._tokenizer, name="x", pooling="weighted")


def test_a_query_runs_on_one_thread_and_bulk_keeps_the_default(
    embedder: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    forward = embedder._model.forward

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return forward(*args, **kwargs)

    monkeypatch.setattr(embedder._model, "forward", recording)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        embedder.embed(["how often are ladders inspected?"])
        embedder.embed(SENTENCES * 2)  # ten texts: a bulk batch
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert seen == [1, 2] and after == 2
