"""The workspace's audit log composed with its database: record an event, verify, list.

Stages that change the metadata database in their own transaction append through
`SqlAuditStore(session)` there; `record` is for changes made elsewhere (files written, a
finished training run), right after the change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from feilun.app.workspace import Workspace
from feilun.governance.audit import AuditEvent, AuditLog, local_actor
from feilun.governance.workspace import workspace_audit_log
from feilun.store.audit import SqlAuditStore


def audit_log(ws: Workspace, create_key: bool = True) -> AuditLog:
    """The workspace's audit log (keys from the deployment key, its checkpoint interval)."""
    return workspace_audit_log(ws.path, ws.settings.audit_checkpoint_every, create_key)


def record(
    ws: Workspace,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
    actor: str | None = None,
) -> AuditEvent:
    """Append one event in its own transaction (actor: the local user by default)."""
    log = audit_log(ws)
    with ws.database.session() as session:
        return log.append(SqlAuditStore(session), actor or local_actor(), action, target, details)
