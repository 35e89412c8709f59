"""Tenant policies: versioned `policy` records in the catalog, cached for the hot path.

A tenant's policy is the latest `policy` record named by its tenant id; a tenant without one
gets the deployment default (the record named `default`), else the built-in `Policy()`.
Every `set` is a new version, so the history stays. A running server sees a change within
twice `CACHE_TTL_S` (see `TtlCache.get_or_refresh`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feilun.core.caching import TtlCache
from feilun.core.records import TenantPolicy
from feilun.governance.moderation import Policy, policy_from_dict
from feilun.serving.accounts import Accounts
from feilun.serving.ledger import CACHE_TTL_S
from feilun.store.catalog import SqlCatalog

DEFAULT_NAME = "default"  # the record name of the deployment default (tenant ids are `ten_…`)


class PolicyStore:
    """Read and set tenant policies; `policy(tenant_id)` is cached for every request."""

    def __init__(
        self, catalog: SqlCatalog, accounts: Accounts, cache_ttl_s: float = CACHE_TTL_S
    ) -> None:
        self._catalog = catalog
        self._accounts = accounts
        self._cache: TtlCache[str, Policy] = TtlCache(cache_ttl_s)

    def policy(self, tenant_id: str) -> Policy:
        """The policy in force for a tenant (its own, else the default)."""
        return self._cache.get_or_refresh(tenant_id, lambda: self._load(tenant_id))

    def _load(self, tenant_id: str) -> Policy:
        record = self.record(tenant_id) or self.record(DEFAULT_NAME)
        return Policy() if record is None else policy_from_dict(record.policy, record.ref)

    def record(self, name: str) -> TenantPolicy | None:
        """The latest policy record of a tenant id (or `default`), if any."""
        found = self._catalog.find(TenantPolicy.kind, name)
        return found[0] if found and isinstance(found[0], TenantPolicy) else None

    def set(
        self, tenant: str | None, values: Mapping[str, Any], source: str, actor: str | None = None
    ) -> TenantPolicy:
        """Validate `values` and store them as the tenant's (None: the default) next version.

        An unknown category or action fails here with the list of valid ones; nothing is saved.
        The change is audited (`policy.set`) right after it is stored; a change of the labels
        or the watermark is an audit event of its own (`policy.labels`, before and after).
        """
        policy = policy_from_dict(values, source)
        name, tenant_name = self._name(tenant)
        previous = self.record(name)
        before = _labelling(self._load(name))  # what was in force, maybe the default's
        record = TenantPolicy(
            name=name,
            version=previous.version + 1 if previous else 1,
            tenant=tenant_name,
            policy=policy.model_dump(mode="json", exclude_defaults=True),
        )
        saved = self._catalog.save(record, if_taken="next")
        self._cache.clear()
        assert isinstance(saved, TenantPolicy)
        details = {"version": saved.version, "source": source}
        self._accounts.audit("policy.set", tenant_name or DEFAULT_NAME, details, actor)
        after = _labelling(policy)
        if after != before:
            changed = details | {"before": before, "after": after}
            self._accounts.audit("policy.labels", tenant_name or DEFAULT_NAME, changed, actor)
        return saved

    def show(self, tenant: str | None) -> tuple[TenantPolicy | None, Policy]:
        """The tenant's own record (None if it has none) and the policy in force for it."""
        name, _ = self._name(tenant)
        record = self.record(name)
        if record is not None:
            return record, policy_from_dict(record.policy, record.ref)
        return None, self._load(name)

    def _name(self, tenant: str | None) -> tuple[str, str]:
        if tenant is None:
            return DEFAULT_NAME, ""
        found = self._accounts.get_tenant(tenant)  # NotFound lists the tenants
        return found.id, found.name


def _labelling(policy: Policy) -> dict[str, Any]:
    """The part of a policy the labelling measures care about: labels and the watermark."""
    return {"labels": policy.labels.model_dump(mode="json"), "watermark": policy.watermark}


def policy_json(record: TenantPolicy | None, policy: Policy, tenant: str | None) -> dict[str, Any]:
    """A policy as the API and `feilun safety policy show --json` print it."""
    return {
        "tenant": tenant,
        "version": record.version if record else None,
        "is_inherited": record is None,  # the tenant has none of its own: the default applies
        "policy": policy.model_dump(mode="json"),
    }
