"""`feilun doctor`: check a workspace and repair what can be repaired safely.

Checks the settings, the database and its revision (migrating after a backup of the SQLite
file), the artifact store, and the packaged models (installed, registered, digest intact).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from feilun.app.workspace import Workspace, open_unchecked
from feilun.core.errors import FeilunError
from feilun.models.packaged import PACKAGED_CHAT_MODELS
from feilun.models.sources.files import sha256_file
from feilun.store import migrate


@dataclass(frozen=True)
class Check:
    """One doctor check: did it pass, what was seen, and what to do if not."""

    name: str
    is_ok: bool
    detail: str
    fix: str = ""


def _check_revision(workspace: Workspace) -> Check:
    database = workspace.database
    current = migrate.current_revision(database)
    head = migrate.head_revision()
    if current == head:
        return Check("database revision", True, f"{database.display_url} at {head}")
    if current is not None and current not in migrate.known_revisions():
        try:
            migrate.check_revision(database)
        except FeilunError as e:
            return Check("database revision", False, e.message, e.fix or "")
    backup = ""
    if database.sqlite_path is not None and database.sqlite_path.exists():
        backup = f"; backup at {migrate.backup_sqlite(database.sqlite_path)}"
    migrate.upgrade(database)
    return Check("database revision", True, f"migrated {current} → {head}{backup}")


def _check_artifacts(workspace: Workspace) -> Check:
    root = workspace.settings.resolved_artifact_root
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor."):
            pass
    except OSError as e:
        return Check("artifact store", False, f"{root} is not writable: {e}", "fix permissions")
    return Check("artifact store", True, f"{root} writable")


def _check_packaged(workspace: Workspace) -> list[Check]:
    checks = []
    added = workspace.models.ensure_packaged()
    for packaged in PACKAGED_CHAT_MODELS:
        path = packaged.locate()
        if path is None:
            checks.append(Check(packaged.name, False, "not installed", packaged.install_hint))
            continue
        record = workspace.models.get(packaged.name)
        digest_ok = sha256_file(Path(record.location)) == record.sha256
        detail = f"{record.ref} at {record.location}" + (" (registered now)" if added else "")
        fix = "" if digest_ok else f"reinstall: pip install --force-reinstall {packaged.pip_name}"
        checks.append(
            Check(packaged.name, digest_ok, detail if digest_ok else "digest mismatch", fix)
        )
    return checks


def run_doctor(explicit: Path | None = None, env: Mapping[str, str] = os.environ) -> list[Check]:
    """Run every check; workspace-level failures come back as a single failed check."""
    try:
        workspace = open_unchecked(explicit, env)
    except FeilunError as e:
        return [Check("workspace", False, e.message, e.fix or "")]
    try:
        checks = [Check("workspace", True, f"{workspace.path.resolve()}")]
        checks.append(_check_revision(workspace))
        checks.append(_check_artifacts(workspace))
        if checks[1].is_ok:
            checks.extend(_check_packaged(workspace))
        return checks
    finally:
        workspace.close()
