"""Where a workspace keeps its safety files, and the moderator built from them.

`<workspace>/safety/lexicon.txt` holds imported terms (merged over the shipped default
lexicon); `<workspace>/safety/classifier.json` is the trained classifier, used when present;
`<workspace>/safety/label.key` is the deployment's secret (created on first use, mode 0600): it
signs AIGC labels, and the audit log's chain and checkpoint keys are derived from it.
"""

from __future__ import annotations

from pathlib import Path

from feilun.core.errors import ConfigError, WorkspaceError
from feilun.core.settings import SETTINGS_FILE
from feilun.governance.audit import DEFAULT_CHECKPOINT_EVERY, AuditLog, derive_keys
from feilun.governance.classifier import Classifier, load_classifier
from feilun.governance.labels import load_or_create_key
from feilun.governance.lexicon import Lexicon, default_lexicon, read_lexicon
from feilun.governance.moderation import Moderator, Policy

SAFETY_DIR = "safety"
LEXICON_FILE = "lexicon.txt"
CLASSIFIER_FILE = "classifier.json"
LABEL_KEY_FILE = "label.key"  # the deployment's AIGC label key, in the safety folder


def safety_dir(workspace: Path, must_exist: bool = False) -> Path:
    """The workspace's safety folder; WorkspaceError when `must_exist` and there is no workspace."""
    if must_exist and not (workspace / SETTINGS_FILE).is_file():
        raise WorkspaceError(
            f"no Feilun workspace at {workspace}",
            f"create one with `feilun init --workspace {workspace}`, or point --workspace or "
            "FEILUN_WORKSPACE at an existing one",
        )
    return workspace / SAFETY_DIR


def workspace_lexicon(workspace: Path) -> Lexicon:
    """The default lexicon plus the workspace's imported terms (the workspace's come first)."""
    path = workspace / SAFETY_DIR / LEXICON_FILE
    if path.is_file():
        return read_lexicon(path).merged(default_lexicon())
    return default_lexicon()


def build_moderator(
    workspace: Path,
    policy: Policy | None = None,
    extra_lexicons: list[Path] | None = None,
    classifier_path: Path | None = None,
    use_classifier: bool = True,
) -> Moderator:
    """The moderator of a workspace: its lexicon (plus extra files) and classifier, if any."""
    lexicon = workspace_lexicon(workspace)
    for path in extra_lexicons or []:
        lexicon = read_lexicon(path).merged(lexicon)
    classifier: Classifier | None = None
    if use_classifier:
        path = classifier_path or workspace / SAFETY_DIR / CLASSIFIER_FILE
        if classifier_path is not None or path.is_file():
            classifier = load_classifier(path)
    return Moderator(lexicon, policy, classifier)


def workspace_audit_log(
    workspace: Path, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, create_key: bool = True
) -> AuditLog:
    """The workspace's audit log, keyed by the deployment key (made on first use if asked)."""
    path = workspace / SAFETY_DIR / LABEL_KEY_FILE
    if not create_key and not path.is_file():
        raise ConfigError(
            f"no deployment key at {path}: the audit log cannot be verified without it",
            "restore safety/label.key from the workspace's backup",
        )
    return AuditLog(derive_keys(load_or_create_key(path)), checkpoint_every)
