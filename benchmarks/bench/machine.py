"""Where a run ran: the host (read in the parent) with torch's side from a child, and the git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.bench.device import TorchInfo
from benchmarks.bench.settings import REPO


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(info: TorchInfo | None) -> dict[str, Any]:
    """The host, plus what a child reported about torch (None: no child ran; the parent never imports torch)."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "torch": info.torch if info else metadata.version("torch"),
        "device": info.device if info else "unknown",
        "gpu": info.gpu if info else None,
        "threads": info.threads if info else None,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "packages": {p: metadata.version(p) for p in ("timm", "transformers", "peft", "accelerate", "datasets")},
    }


def git_state() -> dict[str, Any]:
    """The short commit, and "-dirty" in `describe` when the work tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None, "describe": "unknown"}
    return {"commit": commit, "dirty": dirty, "describe": commit + ("-dirty" if dirty else "")}
