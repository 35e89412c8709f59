"""AIGC implicit labels (GB 45438-2025): a JSON `AIGC` object signed with the deployment key.

Fields as the standard names them: `Label` (1 generated, 2 possibly, 3 suspected),
`ContentProducer`, `ProduceID`, `ReservedCode1` (ours: an HMAC-SHA256 over the content and the
producer's fields), `ContentPropagator`, `PropagateID`, `ReservedCode2` (the propagator's).
`ReservedCode1` is `<content mac>.<fields mac>`, so verification says which part changed.
Labels are embedded in JSON files (a top-level `AIGC` key) and Markdown (front matter) here;
`label_files` adds DOCX and PDF and works on files by suffix.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from feilun.core.errors import ArtifactError, BadInput, ConfigError

FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)
SIGNED_FIELDS = ("Label", "ContentProducer", "ProduceID")
LABELS = {"1": "AI-generated", "2": "possibly AI-generated", "3": "suspected AI-generated"}
KEY_BYTES = 32
_FRONT = "---\n"


def _mac(key: bytes, message: bytes) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode()  # 144 bits: short, still unforgeable


def _fields_message(label: dict[str, str]) -> bytes:
    return json.dumps([label.get(f, "") for f in SIGNED_FIELDS], ensure_ascii=False).encode()


def make_label(
    content: str, key: bytes, producer: str, produce_id: str | None = None, label: str = "1"
) -> dict[str, str]:
    """The `AIGC` object for `content`, signed in `ReservedCode1`."""
    if label not in LABELS:
        raise ConfigError(f"Label={label!r} is not a GB 45438 value", f"use one of {list(LABELS)}")
    if not producer:
        raise ConfigError("ContentProducer is empty", "give the service's name or filing code")
    fields = {
        "Label": label,
        "ContentProducer": producer,
        "ProduceID": produce_id or secrets.token_hex(8),
        "ContentPropagator": "",
        "PropagateID": "",
        "ReservedCode2": "",
    }
    fields["ReservedCode1"] = f"{_mac(key, content.encode())}.{_mac(key, _fields_message(fields))}"
    return {f: fields[f] for f in FIELDS}


@dataclass(frozen=True)
class LabelCheck:
    """The outcome of verifying one label: `is_valid`, and what failed if not."""

    is_valid: bool
    problem: str = ""
    label: dict[str, str] | None = None


def verify_label(content: str, label: Any, key: bytes) -> LabelCheck:
    """Check the label's presence, fields and signature against `content`."""
    if not isinstance(label, dict):
        return LabelCheck(False, "no AIGC label")
    missing = [f for f in FIELDS if not isinstance(label.get(f), str)]
    if missing:
        return LabelCheck(False, f"AIGC label lacks {', '.join(missing)}", label)
    if label["Label"] not in LABELS:
        return LabelCheck(False, f"Label={label['Label']!r} is not one of {list(LABELS)}", label)
    content_mac, _, fields_mac = label["ReservedCode1"].partition(".")
    if not hmac.compare_digest(fields_mac, _mac(key, _fields_message(label))):
        return LabelCheck(
            False,
            "ReservedCode1 does not match Label/ContentProducer/ProduceID: a field was edited, "
            "or the label was signed with another key",
            label,
        )
    if not hmac.compare_digest(content_mac, _mac(key, content.encode())):
        return LabelCheck(False, "ReservedCode1 does not match the content: it was edited", label)
    return LabelCheck(True, "", label)


def label_document(text: str, suffix: str, key: bytes, producer: str) -> str:
    """`text` of a `.json` or `.md` file with an implicit label embedded."""
    if suffix == ".json":
        try:
            value = json.loads(text)
        except ValueError as e:
            raise BadInput(f"not valid JSON: {e}", "label a valid JSON object") from e
        if not isinstance(value, dict):
            raise BadInput("a JSON label needs a top-level object", "wrap the content in {...}")
        value.pop("AIGC", None)
        body = json.dumps(value, ensure_ascii=False, sort_keys=True)
        return json.dumps({**value, "AIGC": make_label(body, key, producer)}, ensure_ascii=False)
    if suffix == ".md":
        front, body = _split_front_matter(text)
        kept = "".join(f"{line}\n" for line in front.splitlines() if not line.startswith("AIGC:"))
        label = json.dumps(make_label(body, key, producer), ensure_ascii=False)
        return f"{_FRONT}{kept}AIGC: {label}\n{_FRONT}{body}"
    raise BadInput(f"cannot label {suffix!r} files yet", "label .json or .md files")


def verify_document(text: str, suffix: str, key: bytes) -> LabelCheck:
    """Verify the implicit label embedded in a `.json` or `.md` file's text."""
    if suffix == ".json":
        try:
            value = json.loads(text)
        except ValueError as e:
            raise BadInput(f"not valid JSON: {e}", "give the labelled file") from e
        if not isinstance(value, dict):
            return LabelCheck(False, "no AIGC label (the JSON is not an object)")
        label = value.pop("AIGC", None)
        return verify_label(json.dumps(value, ensure_ascii=False, sort_keys=True), label, key)
    if suffix == ".md":
        front, body = _split_front_matter(text)
        label = None
        for line in front.splitlines():
            if line.startswith("AIGC:"):
                try:
                    label = json.loads(line[len("AIGC:") :])
                except ValueError:
                    return LabelCheck(False, "the AIGC front-matter line is not valid JSON")
        return verify_label(body, label, key)
    raise BadInput(f"cannot verify {suffix!r} files yet", "verify .json or .md files")


def _split_front_matter(text: str) -> tuple[str, str]:
    if text.startswith(_FRONT):
        end = text.find("\n" + _FRONT, len(_FRONT) - 1)
        if end != -1:
            return text[len(_FRONT) : end + 1], text[end + 1 + len(_FRONT) :]
    return "", text


def load_or_create_key(path: Path) -> bytes:
    """The deployment's label key at `path`, created (0600, atomically) on first use."""
    if path.is_file():
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise ArtifactError(
                f"{path} is not a {KEY_BYTES}-byte label key", "restore it from a backup"
            )
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
        os.link(tmp, path)  # fails if another process created the key meanwhile
    except FileExistsError:
        pass
    finally:
        Path(tmp).unlink(missing_ok=True)
    return load_or_create_key(path)


def read_key(path: Path) -> bytes:
    """An existing label key; ConfigError when there is none."""
    if not path.is_file():
        raise ConfigError(
            f"no label key at {path}",
            "label files first (`feilun label add`), or give the key with --key-file",
        )
    return load_or_create_key(path)
