"""`/admin/policies`: read and set a tenant's governance policy (admin keys only).

`?tenant=T` names the tenant; without it, the deployment default that tenants without a policy
of their own get. Finds the PolicyStore at `app.state.policies`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from feilun.serving.admin.router import Actor, _admin
from feilun.serving.policies import PolicyStore, policy_json

router = APIRouter(prefix="/admin/policies", tags=["admin"], dependencies=[Depends(_admin)])


def _store(request: Request) -> PolicyStore:
    store = getattr(request.app.state, "policies", None)
    if not isinstance(store, PolicyStore):  # a wiring bug, not the caller's fault: a 500
        raise TypeError("app.state.policies must be a PolicyStore for /admin/policies")
    return store


Store = Annotated[PolicyStore, Depends(_store)]


@router.get("")
def get_policy(store: Store, tenant: str | None = None) -> dict[str, Any]:
    """The policy in force for a tenant (or the default)."""
    return policy_json(*store.show(tenant), tenant)


@router.put("")
def set_policy(
    store: Store,
    actor: Actor,
    values: Annotated[dict[str, Any], Body()],
    tenant: str | None = None,
) -> dict[str, Any]:
    """Replace a tenant's policy (a new version); an unknown category is a 400 listing them."""
    record = store.set(tenant, values, source="policy", actor=actor)
    return policy_json(*store.show(tenant), tenant) | {"version": record.version}
