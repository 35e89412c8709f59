"""Routes to manage tenants, keys, quotas and prices, and to read usage and traces.

`router` (prefix `/admin`) needs an admin key and may name any tenant; `tenant_router`
(prefix `/v1/feilun`) serves a key only its own tenant's usage and traces, so tenant A's key
can never read tenant B's. Both find the SqlLedger at `app.state.gateway.ledger`. Handlers are
sync: FastAPI runs them in its thread pool, off the event loop. Changes are audited with the
admin key as the actor (`key:fl-…`), and a key's first /admin request of a day as a login.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import pydantic
from fastapi import APIRouter, Depends, Header, Query, Request

from feilun.serving.accounts import Price, Quota, Tenant
from feilun.serving.errors import PermissionDenied
from feilun.serving.gateway import Principal
from feilun.serving.ledger import SqlLedger
from feilun.serving.reads import MAX_TRACES

Authorization = Annotated[str | None, Header(alias="Authorization")]


class _Body(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class TenantIn(_Body):
    """A tenant to create."""

    name: str = pydantic.Field(description="Unique tenant name.")


class KeyIn(_Body):
    """An API key to create."""

    tenant: str = pydantic.Field(description="Tenant name or id.")
    models: list[str] | None = pydantic.Field(None, description="Allowed models; null: all.")
    expires_in: str | None = pydantic.Field(None, description="Lifetime such as 30d; null: none.")
    is_admin: bool = pydantic.Field(False, description="May use /admin.")


class QuotaIn(_Body):
    """A tenant's quota (null: unlimited)."""

    tenant: str = pydantic.Field(description="Tenant name or id.")
    tokens_per_day: int | None = pydantic.Field(None, ge=1, description="Tokens per UTC day.")
    requests_per_minute: int | None = pydantic.Field(None, ge=1, description="Requests a minute.")


class PriceIn(_Body):
    """A model's price per 1000 tokens (decimals as strings keep them exact)."""

    model: str = pydantic.Field(description="Model name or alias.")
    input_per_1k: Decimal = pydantic.Field(ge=0, description="Price of 1000 prompt tokens.")
    output_per_1k: Decimal = pydantic.Field(ge=0, description="Price of 1000 completion tokens.")


def _tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {"id": tenant.id, "name": tenant.name, "created_at": tenant.created_at.isoformat()}


def _quota_json(quota: Quota) -> dict[str, Any]:
    return {
        "tenant_id": quota.tenant_id,
        "tokens_per_day": quota.tokens_per_day,
        "requests_per_minute": quota.requests_per_minute,
    }


def _price_json(price: Price) -> dict[str, Any]:
    return {
        "model": price.model,
        "input_per_1k": str(price.input_per_1k),
        "output_per_1k": str(price.output_per_1k),
    }


def _ledger(request: Request) -> SqlLedger:
    ledger = getattr(getattr(request.app.state, "gateway", None), "ledger", None)
    if not isinstance(ledger, SqlLedger):  # a wiring bug, not the caller's fault: a 500
        raise TypeError("app.state.gateway.ledger must be a SqlLedger for the /admin routes")
    return ledger


LedgerDep = Annotated[SqlLedger, Depends(_ledger)]


def _caller(ledger: LedgerDep, authorization: Authorization = None) -> Principal:
    return ledger.authenticate(authorization)


Caller = Annotated[Principal, Depends(_caller)]


def _admin(principal: Caller, ledger: LedgerDep) -> Principal:
    if not principal.is_admin:
        raise PermissionDenied(
            f"API key {principal.key_prefix} is not an admin key; /admin needs one",
            "create one with `feilun keys create --tenant T --admin`",
        )
    ledger.accounts.record_admin_login(principal.key_prefix)
    return principal


def _actor(principal: Annotated[Principal, Depends(_admin)]) -> str:
    return f"key:{principal.key_prefix}"


Actor = Annotated[str, Depends(_actor)]


#: `/admin/...`: tenants, keys, quotas, prices, usage and traces, for admin keys only.
router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(_admin)])
#: `/v1/feilun/...`: the calling key's own tenant's usage and traces, nothing else.
tenant_router = APIRouter(prefix="/v1/feilun", tags=["feilun"])


@router.get("/tenants")
def list_tenants(ledger: LedgerDep) -> dict[str, Any]:
    """Every tenant."""
    return {"data": [_tenant_json(t) for t in ledger.accounts.list_tenants()]}


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantIn, ledger: LedgerDep, actor: Actor) -> dict[str, Any]:
    """Create a tenant."""
    return _tenant_json(ledger.accounts.create_tenant(body.name, actor))


@router.get("/keys")
def list_keys(ledger: LedgerDep, tenant: str | None = None) -> dict[str, Any]:
    """API keys (prefixes only), of one tenant or all."""
    return {"data": [k.to_json() for k in ledger.accounts.list_keys(tenant)]}


@router.post("/keys", status_code=201)
def create_key(body: KeyIn, ledger: LedgerDep, actor: Actor) -> dict[str, Any]:
    """Create an API key; the response is the only place its secret (`key`) appears."""
    secret, key = ledger.accounts.create_key(
        body.tenant, body.models, body.expires_in, body.is_admin, actor
    )
    return {"key": secret, **key.to_json()}


@router.delete("/keys/{prefix}")
def revoke_key(prefix: str, ledger: LedgerDep, actor: Actor) -> dict[str, Any]:
    """Revoke an API key."""
    return ledger.accounts.revoke_key(prefix, actor).to_json()


@router.get("/quotas/{tenant}")
def get_quota(tenant: str, ledger: LedgerDep) -> dict[str, Any]:
    """A tenant's quota."""
    accounts = ledger.accounts
    return _quota_json(accounts.get_quota(accounts.get_tenant(tenant).id))


@router.put("/quotas")
def set_quota(body: QuotaIn, ledger: LedgerDep, actor: Actor) -> dict[str, Any]:
    """Replace a tenant's quota (null: unlimited)."""
    accounts = ledger.accounts
    quota = accounts.set_quota(body.tenant, body.tokens_per_day, body.requests_per_minute, actor)
    return _quota_json(quota)


@router.get("/prices")
def list_prices(ledger: LedgerDep) -> dict[str, Any]:
    """Every model price."""
    return {"data": [_price_json(p) for p in ledger.accounts.list_prices()]}


@router.put("/prices")
def set_price(body: PriceIn, ledger: LedgerDep, actor: Actor) -> dict[str, Any]:
    """Set a model's price per 1000 tokens."""
    price = ledger.accounts.set_price(body.model, body.input_per_1k, body.output_per_1k, actor)
    return _price_json(price)


@router.get("/usage")
def admin_usage(
    tenant: str, since: date, ledger: LedgerDep, until: date | None = None
) -> dict[str, Any]:
    """Any tenant's requests, tokens and cost per day and model."""
    rows = ledger.usage_report(ledger.accounts.get_tenant(tenant).id, since, until)
    return {"tenant": tenant, "data": [row.to_json() for row in rows]}


@router.get("/traces")
def admin_list_traces(
    ledger: LedgerDep,
    tenant: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_TRACES)] = 50,
) -> dict[str, Any]:
    """The newest traces, of one tenant or all."""
    tenant_id = ledger.accounts.get_tenant(tenant).id if tenant is not None else None
    return {"data": [t.to_json() for t in ledger.list_traces(tenant_id, limit)]}


@router.get("/traces/{trace_id}")
def admin_get_trace(trace_id: str, ledger: LedgerDep, tenant: str | None = None) -> dict[str, Any]:
    """One trace (with `tenant`, only if it is that tenant's)."""
    tenant_id = ledger.accounts.get_tenant(tenant).id if tenant is not None else None
    return ledger.get_trace(trace_id, tenant_id).to_json()


@tenant_router.get("/usage")
def usage(
    since: date, principal: Caller, ledger: LedgerDep, until: date | None = None
) -> dict[str, Any]:
    """The caller's tenant's requests, tokens and cost per day and model."""
    rows = ledger.usage_report(principal.tenant_id, since, until)
    return {"tenant": principal.tenant_name, "data": [row.to_json() for row in rows]}


@tenant_router.get("/traces")
def list_traces(
    principal: Caller,
    ledger: LedgerDep,
    limit: Annotated[int, Query(ge=1, le=MAX_TRACES)] = 50,
) -> dict[str, Any]:
    """The caller's tenant's newest traces."""
    return {"data": [t.to_json() for t in ledger.list_traces(principal.tenant_id, limit)]}


@tenant_router.get("/traces/{trace_id}")
def get_trace(trace_id: str, principal: Caller, ledger: LedgerDep) -> dict[str, Any]:
    """One of the caller's tenant's traces; any other is 404."""
    return ledger.get_trace(trace_id, principal.tenant_id).to_json()
