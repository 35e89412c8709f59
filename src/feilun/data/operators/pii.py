"""The `pii` operator: find personal data in an item's text and mask it, drop the item or keep it.

The detectors (and their checks) live in `feilun.governance.pii`, shared with serving's traces.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import ClassVar, Literal

import pydantic

from feilun.data.items import Item, Rejection
from feilun.governance.pii import KINDS, MASKS, PiiKind, find_pii

PiiAction = Literal["mask", "drop", "keep"]


class Pii:
    """Masks, drops or keeps items with personal data; counts what it found in `meta["pii"]`."""

    name: ClassVar[str] = "pii"
    version: ClassVar[str] = "1"

    class Params(pydantic.BaseModel):
        """Parameters of the `pii` operator."""

        model_config = pydantic.ConfigDict(extra="forbid")
        default_action: PiiAction = pydantic.Field(
            default="mask",
            description="What to do with a kind not listed in `actions`: mask it, drop the "
            "item, or keep it as is (counted in meta only).",
        )
        actions: dict[PiiKind, PiiAction] = pydantic.Field(
            default_factory=dict,
            description="Action per kind (id_card, mobile, landline, email, bank_card, ip), "
            "e.g. {id_card: drop, ip: keep}.",
        )
        mask_language: Literal["zh", "en"] = pydantic.Field(
            default="zh",
            description="Language of the default masks: zh → [身份证号], en → [ID_CARD].",
        )
        masks: dict[PiiKind, str] = pydantic.Field(
            default_factory=dict,
            description="Replacement text per kind, overriding the default masks.",
        )

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or self.Params()
        self._masks = {**MASKS[self.params.mask_language], **self.params.masks}

    def action(self, kind: PiiKind) -> PiiAction:
        """What this operator does with personal data of `kind`."""
        return self.params.actions.get(kind, self.params.default_action)

    def process(self, item: Item) -> Item | Rejection:
        """The item with its PII masked (or kept), or a Rejection if a `drop` kind is found."""
        found = find_pii(item.text)
        counts = Counter(m.kind for m in found)
        dropped = [kind for kind in KINDS if counts[kind] and self.action(kind) == "drop"]
        if dropped:
            listed = ", ".join(f"{kind} ({counts[kind]})" for kind in dropped)
            return Rejection(item=item, operator=self.name, reason=f"pii: contains {listed}")
        pieces: list[str] = []
        last = 0
        for m in found:
            if self.action(m.kind) == "mask":
                pieces += [item.text[last : m.start], self._masks[m.kind]]
                last = m.end
        pieces.append(item.text[last:])
        meta = {**item.meta, self.name: {kind: counts[kind] for kind in KINDS if counts[kind]}}
        return dataclasses.replace(item, text="".join(pieces), meta=meta)
