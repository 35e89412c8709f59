"""The report card a run leaves in its folder: `manifest.json` for machines, `report.md` for people.

It records what is needed to reproduce and judge the run: the resolved recipe, the code's git
sha, package versions, hardware, input artifact ids, data counts, losses, speed, memory, time.
"""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import psutil
import torch

from feilun.training.runs import Run, write_json

PACKAGES = ("feilun", "torch", "transformers", "peft", "tokenizers", "safetensors", "numpy")


def git_sha() -> str:
    """The commit of the Feilun source tree, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = ""
    return found


def hardware() -> dict[str, Any]:
    """CPU, memory and GPUs of this machine."""
    return {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": psutil.cpu_count(logical=True),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak GPU memory allocated, if any)."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
    return round(max(rss, gpu), 1)


def write_report(run: Run, manifest: dict[str, Any]) -> None:
    """Write `manifest.json` and `report.md` into the run folder (each atomically)."""
    write_json(run.path / "manifest.json", manifest)
    text = render_report(manifest)
    tmp = run.path / ".report.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(run.path / "report.md")


def render_report(m: dict[str, Any]) -> str:
    """The manifest as a Markdown page."""
    metrics, data, inputs = m.get("metrics", {}), m.get("data", {}), m.get("inputs", {})
    lines = [
        f"# Run {m['run_id']}: {m['recipe']['recipe']} → {m.get('result') or '(no result)'}",
        "",
        f"- status: {m['status']}; {metrics.get('steps', 0)} steps in "
        f"{metrics.get('wall_time_s', 0):.1f} s",
        f"- base model: {inputs.get('base_model')} ({inputs.get('base_model_id')})",
        f"- dataset: {inputs.get('dataset')} ({inputs.get('dataset_id')}, "
        f"artifact {inputs.get('dataset_artifact')})",
        f"- recipe hash: {m.get('recipe_hash')}; git {m.get('git_sha') or '(not a checkout)'}",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in metrics.items()),
        "",
        "## Data",
        "",
        "| | count |",
        "|---|---|",
        *(f"| {k} | {_cell(v)} |" for k, v in data.items()),
        "",
        "## Environment",
        "",
        *(f"- {k}: {v}" for k, v in {**m.get("packages", {}), **m.get("hardware", {})}.items()),
        "",
        "## Recipe",
        "",
        "```json",
        _json(m["recipe"]),
        "```",
        "",
    ]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, ensure_ascii=False)
