"""Moderation: a lexicon layer and optional classifier and judge layers, under a per-call policy.

A `Moderator` is built once (the automaton is the costly part) and shared; `check` takes the
tenant's `Policy` per call, so one process serves many tenants. The strongest action of any
hit decides: block > refuse > flag > mask (a masked text is allowed, with the hits hidden).
An empty text is allowed (there is nothing to judge), not an error. The judge (a model-based
classifier, `feilun safety train --base MODEL`) replaces the classifier on prompts only: it
costs a model pass per check, and it was trained on prompts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import pydantic

from feilun.core.blocking import ensure_may_block
from feilun.core.errors import BackendUnavailable, ConfigError
from feilun.governance.lexicon import KeywordMatcher, Lexicon, Match, default_lexicon
from feilun.governance.taxonomy import RISK_BY_ID, RISKS, resolve_category

if TYPE_CHECKING:
    from feilun.governance.streaming import StreamGuard

logger = logging.getLogger(__name__)

Action = Literal["block", "refuse", "flag", "mask", "allow"]
Decision = Literal["allow", "flag", "refuse", "block"]
Language = Literal["zh", "en"]
#: How strong each action is: the strongest of a text's hits decides.
ACTION_STRENGTH: dict[str, int] = {"allow": 0, "mask": 1, "flag": 2, "refuse": 3, "block": 4}
_DECISION: dict[str, Decision] = {
    "allow": "allow",
    "mask": "allow",
    "flag": "flag",
    "refuse": "refuse",
    "block": "block",
}

REFUSALS: dict[str, str] = {
    "zh": "抱歉，我不能协助这个请求：它涉及{name_zh}方面的内容。如有其他问题，我很乐意帮忙。",
    "en": "Sorry, I can't help with that request: it involves {name_en}. "
    "I'm happy to help with something else.",
}


class TracePolicy(pydantic.BaseModel):
    """What a served request's stored trace keeps."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    pii: Literal["mask", "keep"] = pydantic.Field(
        "mask", description="Mask personal data (IDs, phones, emails, cards, IPs) before storing."
    )


class LabelPolicy(pydantic.BaseModel):
    """Which AIGC labels a tenant's output carries (GB 45438); a label switched off is logged."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    api: bool = pydantic.Field(
        False, description="Attach the signed AIGC label to chat and completion responses."
    )
    producer: str = pydantic.Field(
        "feilun", min_length=1, description="ContentProducer: the service's name or filing code."
    )
    explicit: bool = pydantic.Field(
        True,
        description="Visible label on output for people; false: the tenant agreed to go without "
        "it, and every delivery is recorded in the delivery log.",
    )
    implicit: bool = pydantic.Field(
        True,
        description="Metadata label where output is labelled; false: none, even with `api`, "
        "and every delivery is recorded in the delivery log.",
    )

    @property
    def is_waived(self) -> bool:
        """Whether the tenant switched a label off: its deliveries go to the delivery log."""
        return not (self.explicit and self.implicit)


class Policy(pydantic.BaseModel):
    """What to do with each TC260 risk, what traces keep, and labels: per tenant or per call."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")
    default: Action = pydantic.Field(
        "refuse", description="Action for a risk the `categories` map does not name."
    )
    categories: dict[str, Action] = pydantic.Field(
        default_factory=dict,
        description="Action per TC260 group or risk (id or code); a risk beats its group.",
    )
    classifier_threshold: float = pydantic.Field(
        0.5,
        gt=0,
        le=1,
        description=(
            "Classifier score at which its label counts as a hit: 0.5 is the model's trained "
            "per-language threshold; higher is stricter."
        ),
    )
    mask_char: str = pydantic.Field(
        "*", min_length=1, max_length=1, description="Replaces each character of a masked hit."
    )
    refusals: dict[Language, str] = pydantic.Field(
        default_factory=dict,
        description="Refusal text per language (zh, en); `{name_zh}`/`{name_en}` name the risk.",
    )
    traces: TracePolicy = pydantic.Field(
        default_factory=TracePolicy, description="What stored traces keep (`pii: mask|keep`)."
    )
    labels: LabelPolicy = pydantic.Field(
        default_factory=LabelPolicy, description="AIGC labels on API output (`api: true`)."
    )
    watermark: bool = pydantic.Field(
        False, description="Watermark this tenant's generations (transformers runtime)."
    )
    judge: bool = pydantic.Field(
        True,
        description=(
            "Check prompts with the workspace's safety judge when one is trained (a model pass "
            "per prompt); false: the classifier alone."
        ),
    )
    _actions: dict[str, Action] | None = pydantic.PrivateAttr(default=None)

    @pydantic.field_validator("categories")
    @classmethod
    def _known(cls, value: dict[str, Action]) -> dict[str, Action]:
        for name in value:
            resolve_category(name, where="policy categories")
        return value

    def actions(self) -> dict[str, Action]:
        """The action of every risk id (groups expanded, risks over groups), computed once."""
        table = self._actions  # read once: a private attribute costs microseconds per read
        if table is None:
            table = {r.id: self.default for r in RISKS}
            ranked = sorted(self.categories.items(), key=lambda kv: len(resolve_category(kv[0])))
            for name, action in reversed(ranked):  # groups first, then single risks
                for risk in resolve_category(name):
                    table[risk] = action
            self._actions = table
        return table


def load_policy(path: Path | str) -> Policy:
    """A policy from a YAML (or JSON) file; ConfigError naming the file and the bad key."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(
            f"cannot read the policy {str(path)!r}: {e.strerror}", "check the path"
        ) from e
    if path.suffix.lower() == ".json":
        try:
            values = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}", "fix the file") from e
    else:
        try:
            import yaml
        except ImportError as e:
            raise BackendUnavailable(
                f"reading the YAML policy {path} needs pyyaml, which is not installed",
                "pip install pyyaml, or write the policy as JSON",
            ) from e
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}", "fix the file") from e
    if not isinstance(values, dict):
        raise ConfigError(f"{path} is not a mapping of policy keys", "see docs/governance.md")
    return policy_from_dict(values, source=str(path))


def policy_from_dict(values: Mapping[str, Any], source: str = "policy") -> Policy:
    """A policy from plain values, naming the key the user wrote on a bad value."""
    try:
        return Policy.model_validate(values)
    except ConfigError as e:  # an unknown category, raised by the validator as it is
        raise ConfigError(f"{source}: {e.message}", e.fix) from e
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}={err.get('input')!r}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(
            f"{source}: {problems}",
            "actions are block, refuse, flag, mask, allow; see docs/governance.md",
        ) from e


@dataclass(frozen=True)
class Hit:
    """Why a text was judged: a span (lexicon) or the whole text (classifier)."""

    start: int
    end: int
    category: str
    layer: Literal["lexicon", "classifier", "judge"]
    action: Action
    term: str = ""
    score: float | None = None


@dataclass(frozen=True)
class Verdict:
    """The outcome of moderating one text (or, from a StreamGuard, one piece)."""

    decision: Decision
    text: str  # what may be released: the input, with masked hits hidden
    language: Language
    category: str | None = None  # risk id of the deciding hit
    layer: str | None = None
    hits: tuple[Hit, ...] = ()
    refusal: str | None = None  # the message to show instead, on refuse and block
    is_masked: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for JSON output and traces."""
        return asdict(self)


def detect_language(text: str) -> Language:
    """`zh` when Chinese characters are at least half as many as Latin words, else `en`."""
    han = words = 0
    is_in_word = False
    for ch in text[:2000]:
        is_latin = ch.isascii() and ch.isalpha()
        if is_latin and not is_in_word:
            words += 1
        is_in_word = is_latin
        if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf":
            han += 1
    # Two Chinese characters carry about one English word.
    return "zh" if han and han * 2 >= words else "en"


def refusal_text(category: str, language: Language, policy: Policy) -> str:
    """The refusal in the user's language, naming the risk."""
    risk = RISK_BY_ID[category]
    template = policy.refusals.get(language) or REFUSALS[language]
    return template.format(name_zh=risk.name_zh, name_en=risk.name_en)


def mask_text(text: str, spans: list[tuple[int, int]], mask_char: str) -> str:
    """`text` with each span's characters replaced by `mask_char` (length kept)."""
    pieces: list[str] = []
    last = 0
    for start, end in sorted(spans):
        start = max(start, last)
        pieces += [text[last:start], mask_char * max(0, end - start)]
        last = max(last, end)
    return "".join([*pieces, text[last:]])


class TextClassifier(Protocol):
    """A whole-text safety classifier: the n-gram classifier, or a model-based judge."""

    def predict(self, text: str, language: str | None = None) -> tuple[str | None, float]:
        """The risk it would report and the unsafe score, 0.5 at its trained threshold."""
        ...


class Moderator:
    """Lexicon matching plus optional classifier and judge, judged under a policy per call."""

    def __init__(
        self,
        lexicon: Lexicon | None = None,
        policy: Policy | None = None,
        classifier: TextClassifier | None = None,
        judge: TextClassifier | None = None,
    ) -> None:
        self.lexicon = default_lexicon() if lexicon is None else lexicon
        self.matcher = KeywordMatcher(self.lexicon)
        self.policy = policy or Policy()
        self.classifier = classifier
        self.judge = judge

    def check(self, text: str, policy: Policy | None = None, *, is_prompt: bool = False) -> Verdict:
        """The verdict on one whole text: a prompt (`is_prompt`), or a complete answer."""
        policy = policy or self.policy
        language = detect_language(text)
        if not text.strip():
            return Verdict("allow", text, language)
        use_judge = is_prompt and self.judge is not None and policy.judge
        if use_judge:
            ensure_may_block()  # a model pass: never on an event loop (see `core.blocking`)
        hits = self.lexicon_hits(self.matcher.find(text), policy)
        if use_judge:
            hits += self.classifier_hits(text, policy, language=language, layer="judge")
        elif self.classifier is not None:
            hits += self.classifier_hits(text, policy, language=language)
        return judge(text, language, hits, policy)

    def lexicon_hits(self, matches: list[Match], policy: Policy, offset: int = 0) -> list[Hit]:
        """Lexicon matches as hits with the policy's action (allowed risks dropped)."""
        actions = policy.actions()
        hits = []
        for m in matches:
            action = actions[m.category]
            if action != "allow":
                hits.append(
                    Hit(m.start + offset, m.end + offset, m.category, "lexicon", action, m.term)
                )
        return hits

    def classifier_hits(
        self,
        text: str,
        policy: Policy,
        offset: int = 0,
        language: Language | None = None,
        layer: Literal["classifier", "judge"] = "classifier",
    ) -> list[Hit]:
        """The classifier's (or judge's) hit on `text`, when its unsafe score reaches the threshold.

        The score is already shifted by the model's trained threshold for the language
        (detected when not given), so the policy's default 0.5 is that operating point.
        """
        model = self.judge if layer == "judge" else self.classifier
        if model is None:
            return []
        category, score = model.predict(text, language)
        if category is None or score < policy.classifier_threshold:
            return []
        action = policy.actions()[category]
        if action == "mask":  # a classifier has no span to mask: flag instead
            action = "flag"
        if action == "allow":
            return []
        end = offset + len(text)
        return [Hit(offset, end, category, layer, action, score=round(score, 4))]

    def stream(self, policy: Policy | None = None, language: Language | None = None) -> StreamGuard:
        """A guard for one streamed answer (see `feilun.governance.streaming`)."""
        from feilun.governance.streaming import StreamGuard

        return StreamGuard(self, policy or self.policy, language=language)


def judge(text: str, language: Language, hits: list[Hit], policy: Policy) -> Verdict:
    """The verdict from hits: the strongest action decides; masks apply when allowed."""
    if not hits:
        return Verdict("allow", text, language)
    top = max(hits, key=lambda h: (ACTION_STRENGTH[h.action], h.layer == "lexicon"))
    decision = _DECISION[top.action]
    masked = [(h.start, h.end) for h in hits if h.action == "mask"]
    released = mask_text(text, masked, policy.mask_char) if masked else text
    refusal = (
        refusal_text(top.category, language, policy) if decision in ("refuse", "block") else None
    )
    if decision in ("refuse", "block"):
        logger.debug("moderation %s: %s (%s)", decision, top.category, top.layer)
    return Verdict(
        decision=decision,
        text=released,
        language=language,
        category=top.category,
        layer=top.layer,
        hits=tuple(hits),
        refusal=refusal,
        is_masked=bool(masked),
    )
