"""Compose the gateway's moderation from a workspace: its moderator, tenant policies, label key."""

from __future__ import annotations

from functools import partial

from feilun.app.audit import audit_log
from feilun.app.workspace import Workspace
from feilun.core.errors import ArtifactError
from feilun.governance.classifier import Classifier, file_sha256
from feilun.governance.labels import load_or_create_key
from feilun.governance.moderation import Moderator, Verdict, detect_language
from feilun.governance.workspace import (
    CLASSIFIER_FILE,
    LABEL_KEY_FILE,
    build_moderator,
    safety_dir,
)
from feilun.models.safety_judge import JUDGE_FILE, load_judge
from feilun.serving.accounts import Accounts
from feilun.serving.gateway import Principal
from feilun.serving.moderation import BlockRecorder, Moderation
from feilun.serving.policies import PolicyStore
from feilun.store.audit import SqlAuditStore
from feilun.store.deliveries import record_delivery
from feilun.training.safety_judge import ngram_log_odds


def policy_store(ws: Workspace, accounts: Accounts | None = None) -> PolicyStore:
    """The workspace's tenant policies (versioned `policy` records in its catalog)."""
    return PolicyStore(ws.catalog, accounts or Accounts(ws.database, audit=audit_log(ws)))


def build_moderation(ws: Workspace, accounts: Accounts) -> Moderation:
    """The workspace's lexicon and classifier, tenant policies, label key, audit, delivery log."""
    key = load_or_create_key(safety_dir(ws.path) / LABEL_KEY_FILE)
    policies = policy_store(ws, accounts).policy
    return Moderation(
        with_judge(ws, build_moderator(ws.path)),
        policies,
        key,
        on_block=_audited_blocks(ws),
        on_delivery=partial(record_delivery, ws.database),
    )


def with_judge(ws: Workspace, moderator: Moderator) -> Moderator:
    """The moderator with the workspace's safety judge for prompts, when one is trained.

    The judge (`feilun safety train --base MODEL`) is stacked on the n-gram classifier it was
    trained with; ArtifactError when that classifier is gone or was trained again since.
    """
    folder = safety_dir(ws.path)
    path = folder / JUDGE_FILE
    if not path.is_file():
        return moderator
    ngram = moderator.classifier if isinstance(moderator.classifier, Classifier) else None
    second = None if ngram is None else ngram_log_odds(ngram)
    judge = load_judge(path, ws.models.cache_dir, detect_language, second)
    expected = judge.meta.get("classifier_sha256")
    classifier = folder / CLASSIFIER_FILE
    if judge.stack is not None and (
        not classifier.is_file() or file_sha256(classifier) != expected
    ):
        raise ArtifactError(
            f"the safety judge {path} is stacked on another {CLASSIFIER_FILE} than the "
            "workspace's (trained again, or removed)",
            "train both again with `feilun safety train --file F.jsonl --base MODEL`, or "
            f"delete {path} to use the classifier alone",
        )
    moderator.judge = judge
    return moderator


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
