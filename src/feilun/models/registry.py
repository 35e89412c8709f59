"""The model registry: base models, adapters, versions, aliases, cards and lineage.

References people write: `name`, `name@2`, an alias such as `prod`, or `base:adapter`
(each part optionally `@version`). An alias may carry a canary (`set_canary`): that share of
its resolutions picks the canary's target instead. Records live in a `Catalog` handed in by the
composition root; this module never opens a database itself. Given the artifact store too,
adapters open from their stored files (restored into the cache), not from their run folder.
"""

from __future__ import annotations

import inspect
import logging
import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feilun.core import registry as plugins
from feilun.core.errors import ConfigError, NotFound
from feilun.core.protocols import Catalog, ChatModel
from feilun.core.records import Adapter, Alias, BaseModel, Record
from feilun.models.packaged import PACKAGED_CHAT_MODELS, PackagedModel
from feilun.models.sources import ModelSource

if TYPE_CHECKING:
    from feilun.models.merge import ArtifactReader

log = logging.getLogger(__name__)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_REF = re.compile(r"^(?P<name>[^@:]+)(?:@(?P<version>\d+))?$")


@dataclass(frozen=True)
class Resolved:
    """What a reference points at: a base model and optionally an adapter on it."""

    base: BaseModel
    adapter: Adapter | None = None

    @property
    def ref(self) -> str:
        """The fully pinned reference, `base@v` or `base@v:adapter@v`."""
        return self.base.ref + (f":{self.adapter.ref}" if self.adapter else "")


def check_name(name: str) -> None:
    """Refuse names that would be ambiguous in a reference."""
    if not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not allowed",
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )


def _names_in(ref: str) -> set[str]:
    """The model and adapter names a pinned reference such as `a@1:b@2` mentions."""
    return {part.split("@")[0] for part in ref.split(":")}


def _alias_names(alias: Alias) -> set[str]:
    """The model and adapter names an alias points at, its canary's included."""
    canary = alias.meta.get("canary")
    return _names_in(alias.target) | (_names_in(canary["target"]) if canary else set())


def pick_target(alias: Alias, rng: random.Random) -> str:
    """Where `alias` sends one request: its canary's target for the canary's share, else its own."""
    canary = alias.meta.get("canary")
    if canary and rng.random() < float(canary["share"]):
        return str(canary["target"])
    return alias.target


def _split(part: str, ref: str) -> tuple[str, int | None]:
    match = _REF.match(part)
    if match is None:
        raise ConfigError(
            f"model reference {ref!r} is malformed", "write `name`, `name@2` or `base:adapter`"
        )
    version = match.group("version")
    return match.group("name"), int(version) if version else None


class ModelRegistry:
    """Registers, resolves and opens models."""

    def __init__(
        self,
        catalog: Catalog,
        cache_dir: Path,
        artifacts: ArtifactReader | None = None,
        rng: random.Random | None = None,
        watermark: Any = None,
        watermark_by_default: bool = True,
    ) -> None:
        self.catalog = catalog
        self.cache_dir = cache_dir
        self.artifacts = artifacts
        self.watermark = watermark  # handed to runtimes that take `watermark=` (text watermark)
        # False: only requests whose params ask for it are watermarked (a tenant's policy)
        self.watermark_by_default = watermark_by_default
        self.rng = rng or random.Random()  # draws the canary share of alias resolutions
        self._open: dict[str, ChatModel] = {}
        self._opening = threading.Lock()

    # registration ---------------------------------------------------------------------
    def add(
        self,
        name: str,
        source: str,
        location: str,
        *,
        description: str = "",
        meta: dict[str, Any] | None = None,
    ) -> BaseModel:
        """Inspect `location` with the named source and register it as a new version.

        Registering the same weights under the same name again returns the existing record.
        """
        check_name(name)
        if self._find(Adapter.kind, name) or self._find(Alias.kind, name):
            raise ConfigError(f"{name!r} is already an adapter or alias name", "pick another")
        model_source: ModelSource = plugins.lookup("model_sources", source)
        info = model_source.inspect(location)
        record = BaseModel(
            name=name,
            source=source,
            location=location,
            runtime=info.runtime,
            architecture=info.architecture,
            parameters=info.parameters,
            context_length=info.context_length,
            chat_template=info.chat_template,
            sha256=info.sha256,
            description=description,
            meta={**info.extra, **(meta or {})},
        )
        existing = self._find(BaseModel.kind, name)
        if existing and existing[0].content_hash == record.content_hash:
            return self._as_base(existing[0])
        version = existing[0].version + 1 if existing else 1
        saved = self.catalog.save(record.model_copy(update={"version": version}))
        log.info("registered model %s from %s %s", saved.ref, source, location)
        return self._as_base(saved)

    def add_adapter(self, adapter: Adapter) -> Adapter:
        """Register a trained adapter on one of the registered base models."""
        check_name(adapter.name)
        self.get(adapter.base_model)
        existing = self._find(Adapter.kind, adapter.name)
        version = existing[0].version + 1 if existing else 1
        saved = self.catalog.save(adapter.model_copy(update={"version": version}))
        assert isinstance(saved, Adapter)
        return saved

    def ensure_packaged(
        self, packaged: Iterable[PackagedModel] = PACKAGED_CHAT_MODELS
    ) -> list[str]:
        """Register the packaged models that are installed and missing; their names."""
        added = []
        for model in packaged:
            path = model.locate()
            if path is None:
                log.warning("%s is not installed (%s)", model.name, model.install_hint)
                continue
            current = self._find(BaseModel.kind, model.name)
            if current and Path(self._as_base(current[0]).location) == path:
                continue
            self.add(model.name, model.source, str(path), description=model.description)
            added.append(model.name)
        return added

    def remove(self, name: str) -> int:
        """Remove every version of a model, adapter or alias; refuse while others need it."""
        if self._find(Alias.kind, name):
            return self.catalog.remove(Alias.kind, name)
        kind = BaseModel.kind if self._find(BaseModel.kind, name) else Adapter.kind
        if not self._find(kind, name):
            raise self._unknown(name)
        users = [a.name for a in self.aliases() if name in _alias_names(a)]
        adapters = [a.name for a in self.adapters() if a.base_model.split("@")[0] == name]
        if users or adapters:
            raise ConfigError(
                f"{name!r} is still used by aliases {users} and adapters {adapters}",
                "move or remove those first (`feilun models rm NAME` removes an alias too)",
            )
        return self.catalog.remove(kind, name)

    def set_alias(self, alias: str, target: str) -> Alias:
        """Point `alias` at a reference (atomically replaces where it pointed before)."""
        check_name(alias)
        if self._find(BaseModel.kind, alias) or self._find(Adapter.kind, alias):
            raise ConfigError(f"{alias!r} is a model name", "pick an alias that is not a model")
        resolved = self.resolve(target)
        saved = self.catalog.save(Alias(name=alias, target=resolved.ref, inputs=[resolved.base.id]))
        assert isinstance(saved, Alias)
        return saved

    def set_canary(self, alias: str, target: str, share: float) -> Alias:
        """Send `share` of the resolutions of `alias` to `target`; 0 removes the canary.

        The alias keeps its own target; `set_alias` (a promotion) drops the canary.
        """
        if not 0.0 <= share < 1.0:
            raise ConfigError(f"canary share {share} is out of range", "use 0 <= share < 1")
        current = self.alias(alias)
        if current is None:
            raise NotFound(f"no alias {alias!r}", f"create it: `feilun models alias {alias} REF`")
        canary = {"target": self.resolve(target).ref, "share": share} if share > 0 else None
        meta = {k: v for k, v in current.meta.items() if k != "canary"}
        saved = self.catalog.save(
            Alias(
                name=alias,
                target=current.target,
                inputs=current.inputs,
                meta=meta | ({"canary": canary} if canary else {}),
            )
        )
        assert isinstance(saved, Alias)
        return saved

    # lookup ---------------------------------------------------------------------------
    def list_models(self) -> list[BaseModel]:
        """The newest version of every registered base model, by name."""
        latest: dict[str, BaseModel] = {}
        for record in self.catalog.find(BaseModel.kind):
            latest.setdefault(record.name, self._as_base(record))
        return [latest[name] for name in sorted(latest)]

    def adapters(self) -> list[Adapter]:
        """Every registered adapter version, newest first per name."""
        return [r for r in self.catalog.find(Adapter.kind) if isinstance(r, Adapter)]

    def aliases(self) -> list[Alias]:
        """Every alias."""
        return [r for r in self.catalog.find(Alias.kind) if isinstance(r, Alias)]

    def alias(self, name: str) -> Alias | None:
        """The alias record `name` (its own target, whatever its canary), or None."""
        found = self._find(Alias.kind, name)
        return found[0] if found and isinstance(found[0], Alias) else None

    def get(self, ref: str) -> BaseModel:
        """The base model a `name` or `name@version` reference names (aliases followed)."""
        return self.resolve(ref).base

    def resolve(self, ref: str) -> Resolved:
        """Resolve a reference to a base model and optional adapter."""
        ref = ref.strip()
        alias = self.alias(ref)
        if alias is not None:
            ref = pick_target(alias, self.rng)
        base_part, _, adapter_part = ref.partition(":")
        name, version = _split(base_part, ref)
        found = self._find(BaseModel.kind, name, version)
        if not found:
            raise self._unknown(base_part)
        base = self._as_base(found[0])
        if not adapter_part:
            return Resolved(base)
        adapter_name, adapter_version = _split(adapter_part, ref)
        adapters = [
            a
            for a in self._find(Adapter.kind, adapter_name, adapter_version)
            if isinstance(a, Adapter) and a.base_model.split("@")[0] == base.name
        ]
        if not adapters:
            raise NotFound(
                f"no adapter {adapter_part!r} on model {base.name!r}",
                f"adapters on it: {self._adapter_names(base.name) or 'none'}",
            )
        return Resolved(base, adapters[0])

    def card(self, ref: str) -> dict[str, Any]:
        """The model card: what it is, where it came from, and its lineage."""
        resolved = self.resolve(ref)
        base = resolved.base
        card: dict[str, Any] = {
            "name": base.name,
            "version": base.version,
            "ref": resolved.ref,
            "id": base.id,
            "description": base.description,
            "architecture": base.architecture,
            "parameters": base.parameters,
            "context_length": base.context_length,
            "runtime": base.runtime,
            "source": base.source,
            "location": base.location,
            "sha256": base.sha256,
            "chat_template": base.chat_template,
            "created_at": base.created_at.isoformat(),
            "aliases": sorted(a.name for a in self.aliases() if a.target == resolved.ref),
            "adapters": self._adapter_names(base.name),
            "lineage": list(base.inputs),
            "meta": base.meta,
        }
        if resolved.adapter is not None:
            adapter = resolved.adapter
            card["adapter"] = adapter.model_dump(mode="json", exclude={"meta"})
            card["lineage"] = [base.id, *adapter.inputs]
            card["chat_template"] = adapter.chat_template or base.chat_template
        return card

    def with_files(self, resolved: Resolved) -> Resolved:
        """`resolved` with its adapter's files restored from the artifact store into the cache.

        Without an artifact store (or without an adapter) it is returned as it is, and the
        adapter loads from the folder its record names.
        """
        if resolved.adapter is None or self.artifacts is None:
            return resolved
        from feilun.models.merge import restore_adapter

        return Resolved(
            resolved.base, restore_adapter(resolved.adapter, self.artifacts, self.cache_dir)
        )

    def open(self, ref: str | Resolved) -> ChatModel:
        """A ready ChatModel for the reference (or an already resolved one), loaded once."""
        resolved = ref if isinstance(ref, Resolved) else self.resolve(ref)
        key = resolved.ref
        with self._opening:  # concurrent first requests load the weights once
            if key not in self._open:
                factory = plugins.lookup("runtimes", resolved.base.runtime)
                marking = self._watermark_option(factory, resolved)
                if resolved.adapter is None:
                    self._open[key] = factory(resolved.base, self.cache_dir, **marking)
                else:  # an adapter is loaded on its base by runtimes that take `adapter`
                    if "adapter" not in inspect.signature(factory).parameters:
                        raise ConfigError(
                            f"{resolved.ref}: runtime {resolved.base.runtime!r} of "
                            f"{resolved.base.ref} cannot load adapters",
                            "serve adapters on a base model with the transformers runtime",
                        )
                    self._open[key] = factory(
                        resolved.base,
                        self.cache_dir,
                        adapter=self.with_files(resolved).adapter,
                        **marking,
                    )
        return self._open[key]

    def _watermark_option(self, factory: Any, resolved: Resolved) -> dict[str, Any]:
        """The watermark options of a runtime that takes them, when the deployment has a key."""
        if self.watermark is None:
            return {}
        parameters = inspect.signature(factory).parameters
        if "watermark" in parameters and "use_watermark" in parameters:
            return {"watermark": self.watermark, "use_watermark": self.watermark_by_default}
        if self.watermark_by_default:
            log.warning(
                "%s: runtime %r cannot watermark; its answers are not watermarked",
                resolved.ref,
                resolved.base.runtime,
            )
        return {}

    def opened(self) -> list[ChatModel]:
        """Every ChatModel opened so far (to release their resources at shutdown)."""
        with self._opening:
            return list(self._open.values())

    # internals ------------------------------------------------------------------------
    def _find(self, kind: str, name: str, version: int | None = None) -> list[Record]:
        return self.catalog.find(kind, name, version)

    def _adapter_names(self, base_name: str) -> list[str]:
        return sorted({a.name for a in self.adapters() if a.base_model.split("@")[0] == base_name})

    def _unknown(self, name: str) -> NotFound:
        known = [m.name for m in self.list_models()] + [a.name for a in self.aliases()]
        return NotFound(
            f"unknown model {name!r}; registered: {', '.join(known) or 'none'}",
            "see `feilun models list`, or register it with `feilun models add NAME --gguf FILE`",
        )

    @staticmethod
    def _as_base(record: Record) -> BaseModel:
        assert isinstance(record, BaseModel)
        return record
