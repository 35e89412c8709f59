"""The filing pack: what a filing (备案) or an EU AI Act Annex IV file needs, for one model.

`build_filing` gathers the model card and lineage (base model, datasets with their sources
and cleaning reports), safety results with bank sizes, keyword-library statistics per TC260
group and risk, the labelling method, the moderation policies and the audit log's state;
`write_filing_pack` writes it as `filing.json` and `filing.md`, plus the user-agreement,
annotation-rule and Annex IV drafts rendered from governance/templates/.
"""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from feilun import __version__
from feilun.app.audit import audit_log, record
from feilun.app.workspace import Workspace
from feilun.core.records import RECORD_TYPES, Dataset, Document, EvalReport, Record, TenantPolicy
from feilun.evaluation.assess import REQUIREMENTS
from feilun.governance import labels
from feilun.governance.label_files import EXPLICIT_LABEL
from feilun.governance.moderation import Policy
from feilun.governance.taxonomy import GROUP_BY_ID, GROUPS, RISK_BY_ID
from feilun.governance.workspace import LABEL_KEY_FILE, SAFETY_DIR, workspace_lexicon
from feilun.store.audit import SqlAuditStore
from feilun.store.schema import records

TEMPLATES = Path(labels.__file__).with_name("templates")
TEMPLATE_FILES = ("user_agreement.md", "annotation_rules.md", "annex_iv.md")
_LISTED_SOURCES = 50
_LISTED_KINDS = frozenset({"base_model", "dataset", "document"})


def build_filing(ws: Workspace, model: str) -> dict[str, Any]:
    """Everything Feilun knows that a filing for `model` needs, JSON-able."""
    card = ws.models.card(model)
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "feilun_version": __version__,
        "model": card,
        "lineage": _lineage(ws, card),
        "safety_assessment": _safety(ws, card["ref"]),
        "keyword_library": _lexicon_stats(ws),
        "labelling": _labelling(),
        "moderation_policy": _policies(ws),
        "audit_log": _audit_state(ws),
    }


def write_filing_pack(ws: Workspace, model: str, out: Path) -> list[Path]:
    """Write the pack into `out` (created); the files written. The pack is an audit event."""
    filing = build_filing(ws, model)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "filing.json", out / "filing.md"]
    written[0].write_text(json.dumps(filing, ensure_ascii=False, indent=2) + "\n", "utf-8")
    written[1].write_text(render_markdown(filing), "utf-8")
    values = _template_values(filing)
    for name in TEMPLATE_FILES:
        text = string.Template((TEMPLATES / name).read_text("utf-8")).safe_substitute(values)
        (out / name).write_text(text, "utf-8")
        written.append(out / name)
    record(ws, "governance.filing_pack", filing["model"]["ref"], {"out": str(out.resolve())})
    return written


def _records_by_id(ws: Workspace, ids: Iterable[str]) -> list[Record]:
    wanted = list(ids)
    if not wanted:
        return []
    query = sa.select(records.c.kind, records.c.data).where(records.c.id.in_(wanted))
    with ws.database.session(is_read_only=True) as session:
        rows = session.execute(query).all()
    found = {
        r.id: r
        for r in (RECORD_TYPES[row.kind].model_validate_json(json.dumps(row.data)) for row in rows)
    }
    return [found[i] for i in wanted if i in found]


def _lineage(ws: Workspace, card: dict[str, Any]) -> dict[str, Any]:
    """Base models, datasets (sources, cleaning) and anything else the model was made from."""
    start = card["adapter"]["id"] if "adapter" in card else card["id"]
    upstream = _records_by_id(ws, ws.catalog.lineage(start))
    datasets = [cast(Dataset, r) for r in upstream if r.kind == Dataset.kind]
    documents = [r for r in upstream if r.kind == Document.kind]
    return {
        "base_models": [
            {"ref": r.ref, "id": r.id, "source": getattr(r, "source", "")}
            for r in upstream
            if r.kind == "base_model"
        ],
        "datasets": [_dataset_entry(ws, d) for d in datasets],
        "documents": len(documents),
        "other": [f"{r.kind}:{r.ref}" for r in upstream if r.kind not in _LISTED_KINDS],
    }


def _dataset_entry(ws: Workspace, dataset: Dataset) -> dict[str, Any]:
    sources = _records_by_id(ws, dataset.inputs)
    collections = Counter(r.name.split("/", 1)[0] for r in sources if r.kind == Document.kind)
    return {
        "ref": dataset.ref,
        "id": dataset.id,
        "rows": dataset.count,
        "created_at": dataset.created_at.isoformat(),
        "sources": {
            "collections": dict(sorted(collections.items())),
            "records": [f"{r.kind}:{r.ref}" for r in sources[:_LISTED_SOURCES]],
            "total": len(dataset.inputs),
        },
        "cleaning": {
            "recipe": dataset.recipe.get("name", "") if dataset.recipe else "",
            "removed_by_reason": dataset.meta.get("removed_by_reason", {}),
            "rejected": dataset.meta.get("rejected_count", 0),
            "operators": dataset.meta.get("operators", []),
        },
    }


def _safety(ws: Workspace, ref: str) -> dict[str, Any]:
    """Safety tasks of every eval report on this model, with bank sizes; `not run` if none."""
    results = []
    for report in (cast(EvalReport, r) for r in ws.catalog.find(EvalReport.kind)):
        tasks = {
            name: task
            for name, task in report.meta.get("tasks", {}).items()
            if task.get("kind") == "safety" or "safety" in report.suite
        }
        if not tasks or not _same_model(ws, report.model, ref):
            continue
        results.append(
            {
                "report": report.ref,
                "created_at": report.created_at.isoformat(),
                "tasks": {
                    name: {
                        "bank_size": task.get("n", 0),
                        "scores": {
                            key.split("/", 1)[1]: value
                            for key, value in report.scores.items()
                            if key.startswith(f"{name}/")
                        },
                    }
                    for name, task in tasks.items()
                },
            }
        )
    status = "run" if results else "not run"
    return {
        "status": status,
        # TC260-003's limits and the bank sizes it asks for, as `safety assess` applies them
        "thresholds": {r.metric: r.threshold for r in REQUIREMENTS.values()},
        "bank_sizes_required": {r.task: r.min_items for r in REQUIREMENTS.values()},
        "results": results,
        "how": "feilun safety assess --model M (or `feilun eval run` with a safety task)",
    }


def _same_model(ws: Workspace, name: str, ref: str) -> bool:
    try:
        return ws.models.resolve(name).ref == ref
    except Exception:  # a report on a model since removed
        return name == ref


def _lexicon_stats(ws: Workspace) -> dict[str, Any]:
    counts = workspace_lexicon(ws.path).counts()
    by_risk = {
        risk.id: {"code": risk.code, "name_zh": risk.name_zh, "terms": counts.get(risk.id, 0)}
        for risk in RISK_BY_ID.values()
    }
    by_group = {
        group.code: {
            "name_zh": group.name_zh,
            "name_en": group.name_en,
            "terms": sum(counts.get(r.id, 0) for r in RISK_BY_ID.values() if r.group == group.id),
        }
        for group in GROUPS
    }
    return {
        "terms": sum(counts.values()),
        "allow_terms": counts.get("allow", 0),
        "by_group": by_group,
        "by_risk": by_risk,
        "uncovered_risks": [k for k, v in by_risk.items() if v["terms"] == 0],
    }


def _labelling() -> dict[str, Any]:
    return {
        "standard": "GB 45438-2025 (China); EU AI Act Article 50(2)",
        "explicit_label": EXPLICIT_LABEL,
        "explicit_where": "exports, the console and the CLI; on API output per tenant policy",
        "implicit_label": {
            "field": "AIGC",
            "fields": list(labels.FIELDS),
            "label_values": labels.LABELS,
            "signature": "ReservedCode1 = HMAC-SHA256(deployment key, content) (144 bits), then "
            "one HMAC-SHA256 per signed field "
            f"({', '.join(labels.SIGNED_FIELDS)}; 96 bits each), '.'-separated, so "
            "verification names the field or the content that changed",
            "key": f"<workspace>/{SAFETY_DIR}/{LABEL_KEY_FILE} (per deployment, mode 0600)",
            "embedded_in": "JSON (top-level AIGC key), Markdown front matter, DOCX core "
            "properties, PDF document info, each generated row of a dataset export (JSONL, "
            "Parquet), API responses",
            "verify": "feilun label verify FILE",
        },
        "delivery_log": "output handed over without a label (`feilun data export --no-label`, "
        "API answers of tenants whose policy switches labels off) is recorded with recipient "
        "and reason, kept at least 180 days: `feilun governance deliveries list`",
        "watermark": "green-list text watermark, per deployment (settings) or per tenant "
        "(policy `watermark: true`); `feilun watermark detect`",
    }


def _policies(ws: Workspace) -> dict[str, Any]:
    default = Policy()
    tenants = [cast(TenantPolicy, r) for r in ws.catalog.latest(TenantPolicy.kind)]
    return {
        "default": default.model_dump(mode="json"),
        "default_by_group": _actions_by_group(default),
        "tenants": [{"tenant": p.tenant or p.name, "policy": p.policy} for p in tenants],
    }


def _actions_by_group(policy: Policy) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {g.code: Counter() for g in GROUPS}
    for risk_id, action in policy.actions().items():
        table[GROUP_BY_ID[RISK_BY_ID[risk_id].group].code][action] += 1
    return {code: dict(counter) for code, counter in table.items()}


def _audit_state(ws: Workspace) -> dict[str, Any]:
    with ws.database.session(is_read_only=True) as session:
        check = audit_log(ws).verify(SqlAuditStore(session))
    return {
        "events": check.checked,
        "signed_checkpoints": check.checkpoints,
        "intact": check.is_valid,
        "first_bad_seq": check.first_bad_seq,
    }


def _template_values(filing: dict[str, Any]) -> dict[str, str]:
    card, lineage = filing["model"], filing["lineage"]
    adapter = card.get("adapter") or {}
    return {
        "service": "[service name]",
        "model": card["ref"],
        "base_model": ", ".join(b["ref"] for b in lineage["base_models"]) or card["ref"],
        "method": adapter.get("method", "none (base model)"),
        "datasets": ", ".join(d["ref"] for d in lineage["datasets"]) or "no recorded dataset",
        "generated": filing["generated_at"],
        "feilun_version": filing["feilun_version"],
        "safety_summary": _safety_line(filing["safety_assessment"]),
        "lexicon_terms": str(filing["keyword_library"]["terms"]),
        "categories": ", ".join(f"{g.code} {g.name_zh}" for g in GROUPS),
    }


def _safety_line(safety: dict[str, Any]) -> str:
    if safety["status"] == "not run":
        return "not run (run `feilun safety assess --model M` and rebuild the pack)"
    parts = []
    for result in safety["results"]:
        for name, task in result["tasks"].items():
            scores = ", ".join(f"{k} {v:.3g}" for k, v in sorted(task["scores"].items()))
            parts.append(f"{name} (n={task['bank_size']}): {scores}")
    return "; ".join(parts)


def render_markdown(filing: dict[str, Any]) -> str:
    """The pack as one Markdown document (the JSON has every field)."""
    card, lineage, lexicon = filing["model"], filing["lineage"], filing["keyword_library"]
    audit, policy = filing["audit_log"], filing["moderation_policy"]
    lines = [
        f"# Filing pack: {card['ref']}",
        "",
        f"Generated {filing['generated_at']} by Feilun {filing['feilun_version']}.",
        "",
        "## 1. Model card",
        "",
        f"- Reference: `{card['ref']}` (id `{card.get('adapter', {}).get('id', card['id'])}`)",
        f"- Base model: {card['name']}@{card['version']}, {card['architecture'] or '-'}, "
        f"{card['parameters']:,} parameters, context {card['context_length']}",
        f"- Weights: {card['source']} at `{card['location']}` (sha256 {card['sha256'] or '-'})",
    ]
    if "adapter" in card:
        adapter = card["adapter"]
        lines.append(
            f"- Adapter: {adapter['name']}@{adapter['version']} ({adapter['method']}), trained on "
            f"{adapter['dataset'] or '-'}, recipe hash `{adapter['recipe_hash'] or '-'}`"
        )
    lines += ["", "## 2. Lineage", ""]
    lines += [f"- Base model {b['ref']} (`{b['id']}`)" for b in lineage["base_models"]]
    for dataset in lineage["datasets"]:
        cleaning, sources = dataset["cleaning"], dataset["sources"]
        removed = ", ".join(f"{k}: {v}" for k, v in cleaning["removed_by_reason"].items())
        collections = ", ".join(f"{k} ({v})" for k, v in sources["collections"].items())
        origin = collections or f"{sources['total']} input records"
        lines.append(
            f"- Dataset {dataset['ref']}: {dataset['rows']} rows; sources: {origin}; cleaning: "
            f"{cleaning['recipe'] or 'none recorded'}, removed {removed or 'nothing'}, "
            f"rejected {cleaning['rejected']}"
        )
    lines += ["", "## 3. Safety assessment", "", f"- {_safety_line(filing['safety_assessment'])}"]
    lines.append(
        "- Thresholds (TC260-003): refusal ≥ 95%, false refusal ≤ 5%, pass ≥ 90%; banks "
        "≥ 500 should-refuse, ≥ 500 should-answer, ≥ 2,000 generated-content items."
    )
    lines += ["", "## 4. Keyword library", ""]
    lines.append(f"{lexicon['terms']} terms ({lexicon['allow_terms']} allow-listed).")
    lines += ["", "| group | name | terms |", "|---|---|---|"]
    lines += [
        f"| {code} | {g['name_zh']} / {g['name_en']} | {g['terms']} |"
        for code, g in lexicon["by_group"].items()
    ]
    if lexicon["uncovered_risks"]:
        lines.append(f"\nRisks without terms: {', '.join(lexicon['uncovered_risks'])}.")
    implicit = filing["labelling"]["implicit_label"]
    lines += [
        "",
        "## 5. Labelling method",
        "",
        f"- Explicit: “{filing['labelling']['explicit_label']}” on "
        f"{filing['labelling']['explicit_where']}.",
        f"- Implicit (GB 45438-2025): `{implicit['field']}` object with "
        f"{', '.join(implicit['fields'])}; {implicit['signature']}; key {implicit['key']}.",
        f"- Verification: `{implicit['verify']}`.",
        "",
        "## 6. Moderation policy",
        "",
        f"- Default action for an unlisted risk: {policy['default']['default']}; actions per "
        "group: "
        + "; ".join(
            f"{code} {', '.join(f'{a} {n}' for a, n in acts.items())}"
            for code, acts in policy["default_by_group"].items()
        ),
        f"- Tenant policies: {len(policy['tenants'])}"
        + "".join(f"\n  - {t['tenant']}: `{json.dumps(t['policy'])}`" for t in policy["tenants"]),
        "",
        "## 7. Audit log",
        "",
        f"- {audit['events']} events, {audit['signed_checkpoints']} signed checkpoints, "
        + ("intact." if audit["intact"] else f"TAMPERED at event {audit['first_bad_seq']}."),
        "",
        "## 8. Templates in this pack",
        "",
        *[f"- [{name}]({name})" for name in TEMPLATE_FILES],
        "",
    ]
    return "\n".join(lines)
