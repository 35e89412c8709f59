"""The TC260-003 (GB/T 45654-2025, appendix A) risk taxonomy: 5 groups, 31 risks, stable ids.

Ids never change once shipped: lexicons, policies and audit records refer to them. The names
are our own short wording of each risk, in Chinese and English. A name may be given by id
(`terrorism_extremism`), by code (`A.1.4`) or, where a group is meant, by group id or code.
"""

from __future__ import annotations

from dataclasses import dataclass

from feilun.core.errors import ConfigError


@dataclass(frozen=True)
class Group:
    """One of TC260's five risk groups (A.1 … A.5)."""

    id: str
    code: str
    name_zh: str
    name_en: str


@dataclass(frozen=True)
class Risk:
    """One of TC260's 31 risks, in one group."""

    id: str
    code: str
    group: str
    name_zh: str
    name_en: str


GROUPS: tuple[Group, ...] = (
    Group("core_values", "A.1", "违背社会主义核心价值观", "against core socialist values"),
    Group("discrimination", "A.2", "歧视性内容", "discriminatory content"),
    Group("commercial", "A.3", "商业违法违规", "unlawful commercial conduct"),
    Group("rights", "A.4", "侵犯他人合法权益", "infringing others' lawful rights"),
    Group("reliability", "A.5", "特定服务类型的安全需求", "unsafe for high-stakes services"),
)

_RISKS: tuple[tuple[str, str, str, str], ...] = (
    # (group id, risk id, Chinese name, English name), in the standard's order
    ("core_values", "subversion", "煽动颠覆国家政权", "inciting subversion of state power"),
    ("core_values", "national_security", "危害国家安全和利益", "endangering national security"),
    ("core_values", "secession", "煽动分裂国家", "inciting secession"),
    ("core_values", "terrorism_extremism", "宣扬恐怖主义、极端主义", "terrorism and extremism"),
    ("core_values", "ethnic_hatred", "宣扬民族仇恨", "ethnic hatred"),
    ("core_values", "violence_obscenity", "宣扬暴力、淫秽色情", "violence and pornography"),
    ("core_values", "false_information", "传播虚假有害信息", "harmful false information"),
    ("core_values", "other_prohibited", "其他法律法规禁止的内容", "other content banned by law"),
    ("discrimination", "ethnic_discrimination", "民族歧视", "ethnic discrimination"),
    ("discrimination", "religious_discrimination", "信仰歧视", "religious discrimination"),
    ("discrimination", "national_discrimination", "国别歧视", "discrimination by nationality"),
    ("discrimination", "regional_discrimination", "地域歧视", "regional discrimination"),
    ("discrimination", "gender_discrimination", "性别歧视", "gender discrimination"),
    ("discrimination", "age_discrimination", "年龄歧视", "age discrimination"),
    ("discrimination", "occupational_discrimination", "职业歧视", "occupational discrimination"),
    ("discrimination", "health_discrimination", "健康歧视", "health discrimination"),
    ("discrimination", "other_discrimination", "其他歧视", "other discrimination"),
    ("commercial", "ip_infringement", "侵犯知识产权", "intellectual property infringement"),
    ("commercial", "business_ethics", "违反商业道德", "breach of business ethics"),
    ("commercial", "trade_secrets", "泄露商业秘密", "disclosing trade secrets"),
    ("commercial", "unfair_competition", "垄断和不正当竞争", "monopoly and unfair competition"),
    ("commercial", "other_commercial", "其他商业违法违规", "other unlawful commercial conduct"),
    ("rights", "physical_mental_harm", "危害身心健康", "harm to physical or mental health"),
    ("rights", "portrait_rights", "侵害肖像权", "infringing portrait rights"),
    ("rights", "reputation_rights", "侵害名誉权", "infringing reputation"),
    ("rights", "honor_rights", "侵害荣誉权", "infringing honour"),
    ("rights", "privacy_rights", "侵害隐私权", "infringing privacy"),
    ("rights", "personal_information", "侵害个人信息权益", "misusing personal information"),
    ("rights", "other_rights", "侵犯其他合法权益", "infringing other lawful rights"),
    ("reliability", "inaccurate_content", "内容不准确", "inaccurate content"),
    ("reliability", "unreliable_content", "内容不可靠", "unreliable content"),
)


def _number(risks: tuple[tuple[str, str, str, str], ...]) -> tuple[Risk, ...]:
    codes = {g.id: g.code for g in GROUPS}
    seen: dict[str, int] = {}
    numbered = []
    for group, risk_id, name_zh, name_en in risks:
        seen[group] = seen.get(group, 0) + 1
        numbered.append(Risk(risk_id, f"{codes[group]}.{seen[group]}", group, name_zh, name_en))
    return tuple(numbered)


RISKS: tuple[Risk, ...] = _number(_RISKS)
RISK_BY_ID: dict[str, Risk] = {r.id: r for r in RISKS}
GROUP_BY_ID: dict[str, Group] = {g.id: g for g in GROUPS}
_RISK_NAMES: dict[str, str] = {**{r.id: r.id for r in RISKS}, **{r.code: r.id for r in RISKS}}
_GROUP_NAMES: dict[str, str] = {**{g.id: g.id for g in GROUPS}, **{g.code: g.id for g in GROUPS}}


def known_names(include_groups: bool = True) -> str:
    """The accepted names, for an error message."""
    names = [f"{r.id} ({r.code})" for r in RISKS]
    if include_groups:
        names = [f"{g.id} ({g.code})" for g in GROUPS] + names
    return ", ".join(names)


def resolve_risk(name: str, where: str = "category") -> str:
    """The risk id for a risk id or code; ConfigError listing the known risks otherwise."""
    risk = _RISK_NAMES.get(name.strip())
    if risk is None:
        raise ConfigError(
            f"{where}: unknown risk category {name!r}",
            f"use one of the TC260 risks: {known_names(include_groups=False)}",
        )
    return risk


def resolve_category(name: str, where: str = "category") -> tuple[str, ...]:
    """The risk ids a risk or group name covers; ConfigError listing the known names otherwise."""
    key = name.strip()
    if key in _RISK_NAMES:
        return (_RISK_NAMES[key],)
    if key in _GROUP_NAMES:
        group = _GROUP_NAMES[key]
        return tuple(r.id for r in RISKS if r.group == group)
    raise ConfigError(
        f"{where}: unknown category {name!r}",
        f"use a TC260 group or risk: {known_names()}",
    )
