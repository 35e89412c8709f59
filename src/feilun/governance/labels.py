"""AIGC implicit labels (GB 45438-2025): a JSON `AIGC` object signed with the deployment key.

Fields as the standard names them: `Label` (1 generated, 2 possibly, 3 suspected),
`ContentProducer`, `ProduceID`, `ReservedCode1` (ours: HMAC-SHA256s over the content and the
producer's fields), `ContentPropagator`, `PropagateID`, `ReservedCode2` (the propagator's).
`ReservedCode1` is `<content mac>.<Label mac>.<ContentProducer mac>.<ProduceID mac>`, one MAC
per signed part, so verification names what changed ("ContentProducer changed"); labels of the
first format, `<content mac>.<fields mac>`, still verify (naming only "a field").
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


def _mac(key: bytes, message: bytes, size_bytes: int = 18) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:size_bytes]).decode()  # 144 bits: short, unforgeable


def _fields_message(label: dict[str, str]) -> bytes:
    """What the first label format signed: every signed field at once."""
    return json.dumps([label.get(f, "") for f in SIGNED_FIELDS], ensure_ascii=False).encode()


def _field_mac(key: bytes, name: str, value: str) -> str:
    # 96 bits per field: still unforgeable, and the label fits DOCX's 255-character property
    return _mac(key, json.dumps([name, value], ensure_ascii=False).encode(), size_bytes=12)


def _signature(key: bytes, content: str, fields: dict[str, str]) -> str:
    macs = [_mac(key, content.encode())] + [_field_mac(key, f, fields[f]) for f in SIGNED_FIELDS]
    return ".".join(macs)


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
    fields["ReservedCode1"] = _signature(key, content, fields)
    return {f: fields[f] for f in FIELDS}


@dataclass(frozen=True)
class LabelCheck:
    """The outcome of verifying one label: `is_valid`; if not, what failed and which parts.

    `changed` names the signed parts that no longer match: `content` and/or signed fields.
    """

    is_valid: bool
    problem: str = ""
    label: dict[str, str] | None = None
    changed: tuple[str, ...] = ()


def verify_label(content: str, label: Any, key: bytes) -> LabelCheck:
    """Check the label's presence, fields and signature against `content`."""
    if not isinstance(label, dict):
        return LabelCheck(False, "no AIGC label")
    missing = [f for f in FIELDS if not isinstance(label.get(f), str)]
    if missing:
        return LabelCheck(False, f"AIGC label lacks {', '.join(missing)}", label)
    if label["Label"] not in LABELS:
        return LabelCheck(False, f"Label={label['Label']!r} is not one of {list(LABELS)}", label)
    macs = label["ReservedCode1"].split(".")
    changed: tuple[str, ...]
    if len(macs) == 2:  # the first format: one MAC over all the signed fields
        fields_ok = hmac.compare_digest(macs[1], _mac(key, _fields_message(label)))
        changed = () if fields_ok else ("fields",)
    elif len(macs) == 1 + len(SIGNED_FIELDS):
        changed = tuple(
            f
            for f, mac in zip(SIGNED_FIELDS, macs[1:], strict=True)
            if not hmac.compare_digest(mac, _field_mac(key, f, label[f]))
        )
    else:
        return LabelCheck(False, "ReservedCode1 is malformed: it is not a Feilun signature", label)
    if not hmac.compare_digest(macs[0], _mac(key, content.encode())):
        changed = ("content", *changed)
    return LabelCheck(not changed, _problem(changed), label, changed)


def _problem(changed: tuple[str, ...]) -> str:
    """What a failed verification says, naming what changed since signing."""
    if not changed:
        return ""
    if len(changed) == 1 + len(SIGNED_FIELDS) or changed == ("content", "fields"):
        return (
            "ReservedCode1 matches neither the content nor any signed field: the label was "
            "signed with another key (or forged)"
        )
    if changed == ("content",):
        return "content changed: ReservedCode1 does not match the content: it was edited"
    fields = [f for f in changed if f != "content"]
    if fields == ["fields"]:  # the first format cannot tell which
        named, signed = "a signed field", "/".join(SIGNED_FIELDS)
    else:
        named = signed = " and ".join(fields)
    also = " (and the content)" if "content" in changed else ""
    return (
        f"{named} changed{also}: ReservedCode1 does not match {signed}, so a field was edited "
        "(or the label was signed with another key)"
    )


def signed_text(value: dict[str, Any]) -> str:
    """The text a JSON object's label signs: the object without `AIGC`, keys sorted."""
    rest = {k: v for k, v in value.items() if k != "AIGC"}
    return json.dumps(rest, ensure_ascii=False, sort_keys=True, default=str)


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
        signed = make_label(signed_text(value), key, producer)
        return json.dumps({**value, "AIGC": signed}, ensure_ascii=False)
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
        return verify_label(signed_text(value), label, key)
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
