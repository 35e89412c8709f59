from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from feilun.core.errors import ArtifactError, BackendUnavailable, ConfigError
from feilun.models.sources.gguf import SOURCE as GGUF
from feilun.models.sources.hub import SOURCE as HUB
from feilun.models.sources.safetensors import SOURCE as SAFETENSORS
from feilun.models.sources.upstream import SOURCE as UPSTREAM

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small but well-formed GGUF file written with llama.cpp's own `gguf` writer."""
    from gguf import GGUFWriter

    path = tmp_path_factory.mktemp("gguf") / "small.gguf"
    writer = GGUFWriter(str(path), "llama")
    writer.add_context_length(2048)
    writer.add_name("small test model")
    writer.add_chat_template(TEMPLATE)
    writer.add_tensor("token_embd.weight", np.ones((32, 16), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones((16,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_card_comes_from_the_header(gguf_file: Path) -> None:
    info = GGUF.inspect(str(gguf_file))
    assert info.architecture == "llama"
    assert info.context_length == 2048
    assert info.parameters == 32 * 16 + 16
    assert info.chat_template == TEMPLATE
    assert len(info.sha256) == 64


@pytest.mark.parametrize("keep_bytes", [3, 200, -64])
def test_truncated_gguf_is_refused(gguf_file: Path, tmp_path: Path, keep_bytes: int) -> None:
    data = gguf_file.read_bytes()
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(data[:keep_bytes])
    with pytest.raises(ArtifactError, match=r"(truncated|corrupt|cannot read|not a GGUF)"):
        GGUF.inspect(str(broken))


def test_non_gguf_and_missing_files_are_refused(tmp_path: Path) -> None:
    text = tmp_path / "model.gguf"
    text.write_text("hello")
    with pytest.raises(ArtifactError, match="not a GGUF file"):
        GGUF.inspect(str(text))
    with pytest.raises(ArtifactError, match="does not exist"):
        GGUF.inspect(str(tmp_path / "none.gguf"))


def test_safetensors_folder_card(tiny_model_dir: Path) -> None:
    info = SAFETENSORS.inspect(str(tiny_model_dir))
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert info.architecture == config["architectures"][0]
    assert info.context_length == config["max_position_embeddings"]
    assert "<|im_start|>" in info.chat_template
    model, _ = SAFETENSORS.load(str(tiny_model_dir), tiny_model_dir)
    stored = dict(model.state_dict().items())
    # Tied embeddings are stored once on disk; count unique storages like the file does.
    unique = {p.data_ptr(): p.numel() for p in stored.values()}
    assert info.parameters == sum(unique.values())


def test_folder_that_is_not_a_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(ArtifactError, match="no config.json"):
        SAFETENSORS.inspect(str(tmp_path))
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, no_weights)
    for weights in no_weights.glob("*.safetensors"):
        weights.unlink()
    with pytest.raises(ArtifactError, match=r"no \*\.safetensors"):
        SAFETENSORS.inspect(str(no_weights))
    with pytest.raises(ArtifactError, match="not a folder"):
        SAFETENSORS.inspect(str(tmp_path / "absent"))


def test_corrupt_safetensors_header(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x05\x00")
    with pytest.raises(ArtifactError, match="not a valid safetensors"):
        SAFETENSORS.inspect(str(broken))


def test_hub_offline_names_the_local_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendUnavailable) as error:
        HUB.inspect("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert "--gguf FILE" in (error.value.fix or "")
    assert "--path DIR" in (error.value.fix or "")
    with pytest.raises(ConfigError, match="not a hub id"):
        HUB.inspect("not a hub id")


def test_upstream_needs_an_http_url() -> None:
    assert UPSTREAM.inspect("http://127.0.0.1:8000/v1").runtime == "openai_upstream"
    with pytest.raises(ConfigError, match="not an http"):
        UPSTREAM.inspect("127.0.0.1:8000")
