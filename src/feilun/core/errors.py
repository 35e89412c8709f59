"""The error hierarchy: every message says what failed, the offending value and the fix.

A `FeilunError` is an expected failure the user can act on; the CLI prints it as one line
and exits 1. Any other exception is a bug.
"""

from __future__ import annotations


class FeilunError(Exception):
    """An expected failure with a message that names the problem and the fix."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} — {fix}" if fix else message)


class ConfigError(FeilunError):
    """Settings, a recipe or a command-line value is invalid."""


class WorkspaceError(FeilunError):
    """The workspace is missing, from a newer Feilun, or locked."""


class ArtifactError(FeilunError):
    """An artifact is missing, corrupt or not what it claims to be."""


class NotFound(FeilunError):
    """A named thing (model, dataset, tenant, …) does not exist."""


class PluginError(FeilunError):
    """A registered component cannot be found or loaded."""


class PolicyViolation(FeilunError):
    """A governance policy refused the request."""


class QuotaExceeded(FeilunError):
    """A tenant is over its quota or rate limit."""


class BackendUnavailable(FeilunError):
    """A database, object store, hub or upstream server cannot be reached."""


class BadInput(FeilunError):
    """An input file cannot be used: corrupt, encrypted, too big, unsupported or unsafe."""


class InputTooLong(FeilunError):
    """A prompt does not fit the model's context window."""
