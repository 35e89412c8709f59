from __future__ import annotations

import pytest

from feilun.core import registry
from feilun.core.errors import PluginError


def test_builtins_register_through_entry_points() -> None:
    assert {"transformers", "openai_upstream"} <= set(registry.names("runtimes"))
    assert registry.names("model_sources") == ["gguf", "hub", "safetensors", "upstream"]
    source = registry.lookup("model_sources", "safetensors")
    assert hasattr(source, "inspect")


def test_unknown_name_lists_known_ones_and_how_to_add() -> None:
    with pytest.raises(PluginError) as error:
        registry.lookup("runtimes", "tensorrt")
    assert "transformers" in error.value.message
    assert "feilun.runtimes" in (error.value.fix or "")
