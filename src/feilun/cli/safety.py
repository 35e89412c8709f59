"""`feilun safety check|train`, `safety lexicon import|list|test`, `safety policy set|show`."""

from __future__ import annotations

import json as jsonlib
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from feilun.cli import options
from feilun.cli.output import print_json, print_table
from feilun.cli.safety_assess import assess
from feilun.core.errors import BadInput, ConfigError

if TYPE_CHECKING:
    from feilun.governance.classifier import Classifier
    from feilun.governance.moderation import Moderator

app = typer.Typer(help="Moderate text: lexicon, classifier, policies.", no_args_is_help=True)
lexicon_app = typer.Typer(help="The workspace's keyword lexicon.", no_args_is_help=True)
app.add_typer(lexicon_app, name="lexicon")
policy_app = typer.Typer(
    help="Tenants' policies as the gateway applies them.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")

DECISIONS = ("allow", "flag", "refuse", "block")
MAX_ROWS_SHOWN = 20

PolicyFile = Annotated[
    Path | None,
    typer.Option("--policy", help="Policy YAML (see recipes/governance/).", show_default=False),
]
ClassifierFile = Annotated[
    Path | None,
    typer.Option(
        "--classifier",
        help="Classifier JSON (default: the workspace's, when trained).",
        show_default=False,
    ),
]


def _moderator(
    workspace: Path | None,
    policy: Path | None,
    lexicons: list[Path] | None,
    classifier: Path | None,
    use_classifier: bool,
    use_judge: bool = False,
) -> Moderator:
    """The workspace's moderator; with `use_judge`, its safety judge too when one is trained."""
    from feilun.core.settings import resolve_workspace
    from feilun.governance.moderation import load_policy
    from feilun.governance.workspace import build_moderator, safety_dir
    from feilun.models.safety_judge import JUDGE_FILE

    folder = resolve_workspace(workspace)
    moderator = build_moderator(
        folder,
        policy=load_policy(policy) if policy else None,
        extra_lexicons=lexicons,
        classifier_path=classifier,
        use_classifier=use_classifier,
    )
    is_trained = (safety_dir(folder) / JUDGE_FILE).is_file()
    if not (use_judge and is_trained and use_classifier and classifier is None):
        return moderator  # the judge is stacked on the workspace's own classifier
    from feilun.app.moderation import with_judge
    from feilun.app.workspace import opened

    with opened(workspace) as ws:
        return with_judge(ws, moderator)


def _read_field(path: Path, field: str) -> list[tuple[str, str]]:
    """(id, text) of each row of a JSONL file; BadInput naming the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {str(path)!r}: {e}", "give a UTF-8 JSONL file") from e
    items = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = jsonlib.loads(line)
            text = row[field]
        except (ValueError, KeyError, TypeError) as e:
            raise BadInput(
                f"{path}:{number}: not a JSON object with the field {field!r}",
                "fix the row, or name the text field with --field",
            ) from e
        items.append((str(row.get("id", number)), str(text)))
    return items


def check(
    text: Annotated[str | None, typer.Argument(help="Text to check.", show_default=False)] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="JSONL file of items.", show_default=False)
    ] = None,
    field: Annotated[str, typer.Option(help="JSONL field holding the text.")] = "prompt",
    policy: PolicyFile = None,
    lexicon: Annotated[
        list[Path] | None,
        typer.Option("--lexicon", help="Extra lexicon file (repeatable).", show_default=False),
    ] = None,
    classifier: ClassifierFile = None,
    use_classifier: Annotated[
        bool, typer.Option("--use-classifier/--no-classifier", help="Use the classifier layer.")
    ] = True,
    use_judge: Annotated[
        bool,
        typer.Option(
            "--judge/--no-judge",
            help="Check the texts as prompts with the workspace's safety judge, when trained.",
        ),
    ] = True,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Moderation verdict (allow, flag, refuse, block) of TEXT or of each item of --file."""
    if (text is None) == (file is None):
        raise ConfigError(
            "give TEXT or --file F.jsonl (one of them)", "see `feilun safety check --help`"
        )
    moderator = _moderator(workspace, policy, lexicon, classifier, use_classifier, use_judge)
    if text is not None:
        verdict = moderator.check(text, is_prompt=True)
        if json:
            print_json(verdict.to_dict())
            return
        results = [{"id": "text", **_summary(verdict.to_dict())}]
    else:
        assert file is not None
        items = _read_field(file, field)
        results = [
            {"id": i, **_summary(moderator.check(t, is_prompt=True).to_dict())} for i, t in items
        ]
    counts = Counter(r["decision"] for r in results)
    total = len(results)
    shares = {d: round(counts[d] / total, 4) if total else 0.0 for d in DECISIONS}
    if json:
        counted = {d: counts[d] for d in DECISIONS}
        print_json({"total": total, "counts": counted, "shares": shares, "items": results})
        return
    shown = results if total <= MAX_ROWS_SHOWN else [r for r in results if r["decision"] != "allow"]
    rows = [
        (r["id"], r["decision"], r["category"] or "", r["layer"] or "", r["why"])
        for r in shown[:MAX_ROWS_SHOWN]
    ]
    print_table("moderation", ["id", "decision", "category", "layer", "why"], rows)
    if text is not None and verdict.refusal:
        typer.echo(f"refusal: {verdict.refusal}")
    if file is not None:
        summary = [(d, counts[d], f"{shares[d]:.1%}") for d in DECISIONS]
        print_table(f"{total} items from {file}", ["decision", "items", "share"], summary)


def _summary(verdict: dict[str, Any]) -> dict[str, Any]:
    hits = verdict["hits"]
    why = ", ".join(
        h["term"] if h["layer"] == "lexicon" else f"classifier p={h['score']}" for h in hits[:3]
    )
    return {
        "decision": verdict["decision"],
        "category": verdict["category"],
        "layer": verdict["layer"],
        "language": verdict["language"],
        "why": why,
    }


def train(
    file: Annotated[Path, typer.Option("--file", help="JSONL file of labelled texts.")],
    text_field: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    label_field: Annotated[str, typer.Option(help="Field holding the label.")] = "label",
    benign_label: Annotated[str, typer.Option(help="The label of safe texts.")] = "safe",
    category: Annotated[
        str, typer.Option(help="TC260 risk for unsafe labels that are not risk ids themselves.")
    ] = "other_prohibited",
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the data.")] = 100,
    target_false_refusal: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Pick each language's threshold so at most this share of benign rows is "
            "refused (on out-of-fold scores); 0.5 is used where a language has < 20 benign rows.",
        ),
    ] = 0.05,
    folds: Annotated[
        int, typer.Option(min=2, help="Cross-validation folds for picking the thresholds.")
    ] = 5,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the model (default: the workspace's).", show_default=False
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Also train the safety judge on this registered model's states (e.g. "
            "smollm2-135m-instruct), stacked on the classifier; saved beside it as judge.json "
            "and used by serving when present. Minutes of CPU per thousand rows.",
            show_default=False,
        ),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Train the n-gram classifier layer (Chinese and English) on a labelled JSONL file."""
    from feilun.cli.output import spinner
    from feilun.core.settings import resolve_workspace
    from feilun.governance.classifier import file_sha256, read_examples, train_classifier
    from feilun.governance.workspace import CLASSIFIER_FILE, safety_dir

    if out is None:
        out = safety_dir(resolve_workspace(workspace), must_exist=True) / CLASSIFIER_FILE
    examples = read_examples(file, text_field, label_field)
    with spinner(f"training on {len(examples)} rows"):
        model = train_classifier(
            examples,
            benign_label,
            category=category,
            epochs=epochs,
            target_false_refusal=target_false_refusal,
            folds=folds,
        )
    model.source = {"file": str(file), "sha256": file_sha256(file), "rows": len(examples)}
    model.save(out)
    result = {
        "path": str(out),
        "labels": model.labels,
        "thresholds": model.thresholds,
        **model.metrics,
    }
    if base is not None:
        with spinner(f"training the judge on {base}"):
            result["judge"] = _train_judge(
                workspace, base, model, out, examples, category, epochs, target_false_refusal
            )
    if json:
        print_json(result)
        return
    validation = result.pop("validation", {})
    judge = result.pop("judge", None)
    rows = [(k, v) for k, v in result.items() if k != "thresholds"]
    for language in ("zh", "en"):
        if language not in model.thresholds:
            rows.append((f"threshold {language}", "0.5 (fewer than 20 benign rows)"))
            continue
        figures = validation[language]
        rows.append(
            (
                f"threshold {language}",
                f"{model.thresholds[language]:.4f} (out of fold: refuses "
                f"{figures['unsafe_recall']:.1%} of unsafe, {figures['false_refusal']:.1%} of "
                "benign rows)",
            )
        )
    if judge is not None:
        for language, figures in judge["validation"].items():
            rows.append(
                (
                    f"judge {language}",
                    f"out of fold: refuses {figures['unsafe_recall']:.1%} of unsafe, "
                    f"{figures['false_refusal']:.1%} of benign rows",
                )
            )
        rows.append(("judge", judge["path"]))
    print_table(f"classifier saved to {out}", ["", "value"], rows)


def _train_judge(
    workspace: Path | None,
    base: str,
    ngram: Classifier,
    classifier_path: Path,
    examples: list[tuple[str, str]],
    category: str,
    epochs: int,
    target_false_refusal: float,
) -> dict[str, Any]:
    """Train the judge on `base`, stacked on the classifier just saved; save it beside it."""
    from feilun.app.workspace import opened
    from feilun.governance.classifier import file_sha256
    from feilun.models.safety_judge import JUDGE_FILE, Backbone
    from feilun.training.base import load_base_model
    from feilun.training.safety_judge import default_layer, train_judge

    with opened(workspace) as ws:
        record, model, tokenizer = load_base_model(ws.models, base)
    judge = train_judge(
        examples,
        ngram.benign_label,
        Backbone(model, tokenizer, default_layer(model)),
        category=category,
        ngram=ngram,
        ngram_epochs=epochs,
        target_false_refusal=target_false_refusal,
        meta={
            "base": {k: getattr(record, k) for k in ("ref", "source", "location", "sha256")},
            "classifier_sha256": file_sha256(classifier_path),
        },
    )
    path = classifier_path.with_name(JUDGE_FILE)
    judge.save(path)
    return {"path": str(path), "thresholds": judge.thresholds, **judge.meta}


@lexicon_app.command("import")
def lexicon_import(
    file: Annotated[Path, typer.Argument(help="Lexicon file, or a word list with --category.")],
    category: Annotated[
        str | None,
        typer.Option(
            help="Treat FILE as a plain word list, every term of this risk.", show_default=False
        ),
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Add the terms of FILE to the workspace lexicon (the whole file or nothing)."""
    from feilun.core.settings import resolve_workspace
    from feilun.governance.lexicon import (
        Lexicon,
        read_lexicon,
        read_word_list,
        write_lexicon,
    )
    from feilun.governance.workspace import LEXICON_FILE, safety_dir

    path = safety_dir(resolve_workspace(workspace), must_exist=True) / LEXICON_FILE
    new = read_word_list(file, category) if category else read_lexicon(file)
    current = read_lexicon(path) if path.is_file() else Lexicon(())
    merged = current.merged(new)
    write_lexicon(merged, path)
    added = len(merged) - len(current)
    result = {"file": str(file), "read": len(new), "added": added, "total": len(merged)}
    if json:
        print_json(result)
        return
    typer.echo(f"added {added} of {len(new)} terms from {file}; {path} has {len(merged)}")


@lexicon_app.command("list")
def lexicon_list(
    category: Annotated[
        str | None, typer.Option(help="Show this risk's terms.", show_default=False)
    ] = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Terms per TC260 risk in the lexicon in force (default plus workspace)."""
    from feilun.core.settings import resolve_workspace
    from feilun.governance.lexicon import ALLOW
    from feilun.governance.taxonomy import RISKS, resolve_risk
    from feilun.governance.workspace import workspace_lexicon

    lexicon = workspace_lexicon(resolve_workspace(workspace))
    if category is not None:
        risk = category if category == ALLOW else resolve_risk(category, where="--category")
        terms = [e.term for e in lexicon.entries if e.category == risk]
        if json:
            print_json({"category": risk, "terms": terms})
        else:
            print_table(f"{risk}: {len(terms)} terms", ["term"], [(t,) for t in terms])
        return
    counts = lexicon.counts()
    rows = [(r.code, r.id, r.name_zh, r.name_en, counts.get(r.id, 0)) for r in RISKS]
    rows.append(("", ALLOW, "例外", "exceptions", counts.get(ALLOW, 0)))
    if json:
        keys = ("code", "id", "name_zh", "name_en", "terms")
        print_json([dict(zip(keys, row, strict=True)) for row in rows])
        return
    print_table(f"lexicon: {len(lexicon)} terms", ["code", "id", "中文", "risk", "terms"], rows)


@lexicon_app.command("test")
def lexicon_test(
    text: Annotated[str, typer.Argument(help="Text to match against the lexicon.")],
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """The lexicon terms found in TEXT, with their spans and risks."""
    from feilun.core.settings import resolve_workspace
    from feilun.governance.lexicon import KeywordMatcher
    from feilun.governance.workspace import workspace_lexicon

    matches = KeywordMatcher(workspace_lexicon(resolve_workspace(workspace))).find(text)
    if json:
        print_json([m.__dict__ for m in matches])
        return
    rows = [(m.start, m.end, m.term, m.category) for m in matches]
    print_table(f"{len(matches)} matches", ["start", "end", "term", "category"], rows)


PolicyTenant = Annotated[
    str | None,
    typer.Option(
        "--tenant",
        "-t",
        help="Tenant name or id (default: the deployment default).",
        show_default=False,
    ),
]


@policy_app.command("set")
def policy_set(
    file: Annotated[Path, typer.Option("--file", help="Policy YAML (see recipes/governance/).")],
    tenant: PolicyTenant = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """Store FILE as the tenant's policy (a new version); a running server applies it in 1 s."""
    from feilun.app.moderation import policy_store
    from feilun.app.workspace import opened
    from feilun.governance.moderation import load_policy

    values = load_policy(file).model_dump(mode="json", exclude_defaults=True)
    with opened(workspace) as ws:
        record = policy_store(ws).set(tenant, values, source=str(file))
    if json:
        print_json({"tenant": tenant, "version": record.version, "policy": record.policy})
        return
    typer.echo(f"policy of {tenant or 'the default'} is now version {record.version} ({file})")


@policy_app.command("show")
def policy_show(
    tenant: PolicyTenant = None,
    workspace: options.Workspace = None,
    json: options.Json = False,
) -> None:
    """The policy in force for a tenant (its own, else the default), action per TC260 group."""
    from feilun.app.moderation import policy_store
    from feilun.app.workspace import opened
    from feilun.serving.policies import policy_json

    with opened(workspace) as ws:
        record, policy = policy_store(ws).show(tenant)
    shown = policy_json(record, policy, tenant)
    if json:
        print_json(shown)
        return
    origin = f"version {record.version}" if record else "inherited from the default"
    rows: list[tuple[str, str]] = list(policy.categories.items())
    rows += [
        ("(any other risk)", policy.default),
        ("traces.pii", policy.traces.pii),
        ("labels.api", str(policy.labels.api).lower()),
    ]
    print_table(f"policy of {tenant or 'the default'} ({origin})", ["category", "action"], rows)


app.command("check")(check)
app.command("train")(train)
app.command("assess")(assess)
