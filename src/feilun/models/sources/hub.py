"""Model hub ids (`org/name`): real hub loading where a hub is reachable, a clear error offline."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from feilun.core.errors import BackendUnavailable, ConfigError
from feilun.models.sources import SourceInfo
from feilun.models.sources.safetensors import SOURCE as SAFETENSORS

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_OFFLINE_FIX = (
    "this machine cannot reach the hub: register a local copy instead with "
    "`feilun models add NAME --gguf FILE` or `feilun models add NAME --path DIR` "
    "(a folder saved with save_pretrained)"
)
_META_FILES = ["config.json", "tokenizer_config.json", "chat_template.jinja"]


def _check_id(hub_id: str) -> None:
    if not _HUB_ID.match(hub_id):
        raise ConfigError(
            f"{hub_id!r} is not a hub id", "hub ids look like `organisation/model-name`"
        )


def _download(hub_id: str, cache_dir: Path, patterns: list[str] | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        folder = snapshot_download(
            hub_id, cache_dir=str(cache_dir / "hub"), allow_patterns=patterns, etag_timeout=10
        )
    except RepositoryNotFoundError as e:
        raise ConfigError(f"the hub has no model {hub_id!r}", "check the id's spelling") from e
    except HFValidationError as e:
        raise ConfigError(f"{hub_id!r} is not a valid hub id: {e}", "use `org/name`") from e
    except Exception as e:  # network failures surface as many httpx/OSError types
        raise BackendUnavailable(
            f"cannot download {hub_id!r} from the hub: {e}", _OFFLINE_FIX
        ) from e
    return Path(folder)


class HubSource:
    """A model on the Hugging Face hub, downloaded into the workspace cache."""

    def inspect(self, location: str) -> SourceInfo:
        """Fetch only the config and tokenizer settings to build the card."""
        _check_id(location)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            folder = _download(location, Path(tmp), _META_FILES)
            config: dict[str, Any] = json.loads((folder / "config.json").read_text("utf-8"))
            template = ""
            if (folder / "chat_template.jinja").is_file():
                template = (folder / "chat_template.jinja").read_text("utf-8")
            elif (folder / "tokenizer_config.json").is_file():
                tok_config = json.loads((folder / "tokenizer_config.json").read_text("utf-8"))
                template = str(tok_config.get("chat_template", "") or "")
        architectures = config.get("architectures") or [config.get("model_type", "unknown")]
        return SourceInfo(
            architecture=str(architectures[0]),
            parameters=0,  # unknown until the weights are downloaded
            context_length=int(config.get("max_position_embeddings", 0)),
            chat_template=template,
            sha256="",
        )

    def load(self, location: str, cache_dir: Path) -> tuple[Any, Any]:
        """Download the snapshot (once) and load it as a safetensors folder."""
        _check_id(location)
        folder = _download(location, cache_dir, None)
        return SAFETENSORS.load(str(folder), cache_dir)


SOURCE = HubSource()
