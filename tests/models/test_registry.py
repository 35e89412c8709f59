from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from feilun.core.errors import ConfigError, NotFound
from feilun.core.records import Adapter
from feilun.models.packaged import PackagedModel
from feilun.models.registry import ModelRegistry
from feilun.store.catalog import SqlCatalog
from feilun.store.database import open_database
from feilun.store.migrate import upgrade


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    database = open_database(f"sqlite:///{tmp_path / 'feilun.db'}")
    upgrade(database)
    return ModelRegistry(SqlCatalog(database), tmp_path / "cache")


def test_add_list_show(registry: ModelRegistry, tiny_model_dir: Path) -> None:
    record = registry.add("tiny", "safetensors", str(tiny_model_dir), description="test")
    assert record.ref == "tiny@1"
    assert [m.name for m in registry.list_models()] == ["tiny"]
    card = registry.card("tiny")
    assert card["architecture"] == "LlamaForCausalLM"
    assert card["parameters"] > 0
    assert card["sha256"] == record.sha256
    assert "<|im_start|>" in card["chat_template"]
    assert card["source"] == "safetensors"


def test_same_weights_twice_is_idempotent_new_weights_are_a_new_version(
    registry: ModelRegistry, tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = registry.add("tiny", "safetensors", str(tiny_model_dir))
    assert registry.add("tiny", "safetensors", str(tiny_model_dir)).id == first.id
    changed = tmp_path / "changed"
    shutil.copytree(tiny_model_dir, changed)
    weights = changed / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    second = registry.add("tiny", "safetensors", str(changed))
    assert second.version == 2
    assert registry.get("tiny").version == 2
    assert registry.get("tiny@1").id == first.id


def test_aliases_move_and_resolve(registry: ModelRegistry, tiny_model_dir: Path) -> None:
    registry.add("tiny", "safetensors", str(tiny_model_dir))
    registry.set_alias("prod", "tiny")
    assert registry.resolve("prod").ref == "tiny@1"
    assert registry.card("tiny")["aliases"] == ["prod"]
    with pytest.raises(ConfigError, match="still used by aliases"):
        registry.remove("tiny")
    registry.remove("prod")
    assert registry.remove("tiny") == 1
    assert registry.list_models() == []


def test_unknown_model_lists_the_registered_ones(
    registry: ModelRegistry, tiny_model_dir: Path
) -> None:
    registry.add("tiny", "safetensors", str(tiny_model_dir))
    with pytest.raises(NotFound, match="registered: tiny") as error:
        registry.resolve("gpt-9")
    assert "feilun models list" in (error.value.fix or "")
    with pytest.raises(NotFound):
        registry.resolve("tiny@7")
    with pytest.raises(NotFound, match="no adapter"):
        registry.resolve("tiny:handbook")
    with pytest.raises(NotFound):
        registry.remove("gpt-9")


def test_adapters_resolve_on_their_base(registry: ModelRegistry, tiny_model_dir: Path) -> None:
    base = registry.add("tiny", "safetensors", str(tiny_model_dir))
    adapter = registry.add_adapter(
        Adapter(name="handbook", base_model=base.ref, inputs=[base.id, "dst_x"])
    )
    resolved = registry.resolve("tiny:handbook")
    assert resolved.adapter is not None
    assert resolved.adapter.id == adapter.id
    assert resolved.ref == "tiny@1:handbook@1"
    assert registry.card("tiny:handbook")["lineage"] == [base.id, base.id, "dst_x"]
    with pytest.raises(ConfigError, match="still used"):
        registry.remove("tiny")


@pytest.mark.parametrize("name", ["", "a:b", "a@1", "-x", "x" * 65, "飞轮 model"])
def test_bad_names_are_refused(registry: ModelRegistry, tiny_model_dir: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="not allowed"):
        registry.add(name, "safetensors", str(tiny_model_dir))


def test_unknown_source_lists_the_known_ones(registry: ModelRegistry) -> None:
    from feilun.core.errors import PluginError

    with pytest.raises(PluginError, match="gguf, hub, safetensors, upstream"):
        registry.add("x", "onnx", "/x.onnx")


def test_ensure_packaged_registers_installed_models_once(
    registry: ModelRegistry, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "site" / "tiny_weights_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copytree(tiny_model_dir, package / "model")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    packaged = PackagedModel("tiny-packaged", "tiny_weights_pkg", "x", "model", "safetensors", "")
    missing = PackagedModel("absent", "no_such_package_xyz", "x", "y", "gguf", "")
    assert registry.ensure_packaged([packaged, missing]) == ["tiny-packaged"]
    assert registry.ensure_packaged([packaged, missing]) == []
    assert [m.name for m in registry.list_models()] == ["tiny-packaged"]
    assert registry.get("tiny-packaged").location == str(package / "model")
