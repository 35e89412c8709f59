"""Compose the gateway's moderation from a workspace: its moderator, tenant policies, label key."""

from __future__ import annotations

from functools import partial

from feilun.app.audit import audit_log
from feilun.app.workspace import Workspace
from feilun.governance.labels import load_or_create_key
from feilun.governance.moderation import Verdict
from feilun.governance.workspace import LABEL_KEY_FILE, build_moderator, safety_dir
from feilun.serving.accounts import Accounts
from feilun.serving.gateway import Principal
from feilun.serving.moderation import BlockRecorder, Moderation
from feilun.serving.policies import PolicyStore
from feilun.store.audit import SqlAuditStore
from feilun.store.deliveries import record_delivery


def policy_store(ws: Workspace, accounts: Accounts | None = None) -> PolicyStore:
    """The workspace's tenant policies (versioned `policy` records in its catalog)."""
    return PolicyStore(ws.catalog, accounts or Accounts(ws.database, audit=audit_log(ws)))


def build_moderation(ws: Workspace, accounts: Accounts) -> Moderation:
    """The workspace's lexicon and classifier, tenant policies, label key, audit, delivery log."""
    key = load_or_create_key(safety_dir(ws.path) / LABEL_KEY_FILE)
    policies = policy_store(ws, accounts).policy
    return Moderation(
        build_moderator(ws.path),
        policies,
        key,
        on_block=_audited_blocks(ws),
        on_delivery=partial(record_delivery, ws.database),
    )


def _audited_blocks(ws: Workspace) -> BlockRecorder:
    log = audit_log(ws)

    def record_block(principal: Principal, verdict: Verdict) -> None:
        details = {"category": verdict.category, "layer": verdict.layer}
        with ws.database.session() as session:
            actor = f"key:{principal.key_prefix}"
            log.append(
                SqlAuditStore(session), actor, "moderation.block", principal.tenant_name, details
            )

    return record_block
