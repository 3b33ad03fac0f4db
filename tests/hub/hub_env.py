"""Pointing huggingface_hub at the fake Hub (`fake_hub.py`, which stands in for huggingface.co because this
machine cannot reach it), in this process and in child processes, and what the push tests share."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_hub import FakeHub

REPO_ROOT = Path(__file__).resolve().parents[2]
BASE_REPO = "org/tiny-bert"
LADDER_REPO = "org/ladder-on-finish"  # where the session's ladder pushes itself (`push_to_hub: true`)


def point_at(hub: FakeHub, mp: pytest.MonkeyPatch, home: Path) -> None:
    """This process's huggingface_hub talks to `hub`, online, with no token unless a test sets one.

    huggingface_hub reads its environment once, at import, into `huggingface_hub.constants`; a fresh `HfApi`
    reads `constants.ENDPOINT`, `get_token` reads `HF_TOKEN` and `constants.HF_TOKEN_PATH` at call time, and
    every request checks `constants.HF_HUB_OFFLINE` (tests/conftest.py sets HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    env = {
        "HF_ENDPOINT": hub.url,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for key, value in env.items():
        mp.setenv(key, value)
    for key in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE"):
        mp.delenv(key, raising=False)
    mp.setattr(constants, "ENDPOINT", hub.url)
    mp.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}")
    mp.setattr(constants, "HF_HUB_OFFLINE", False)
    # No user agent lookup of the agent-harness registry: requests the tests count stay the push's own.
    mp.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    mp.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    mp.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))  # no saved login unless a test writes one
    mp.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))


def child_env(hub: FakeHub, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a child process that talks to `hub`: no token, no saved login, unless `extra` says."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH")}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def start_cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """`peft-ladder <args>` in a child process (started, not waited for: callers run several at once)."""
    return subprocess.Popen(
        [sys.executable, "-m", "peft_ladder.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (dotfiles included) with its content: equal before and after means untouched."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class LadderRun:
    run_dir: Path
    base_snapshot: Path  # where the ladder loaded `org/tiny-bert` from: its Hugging Face cache snapshot
    texts: list[str]  # validation rows to compare logits on
