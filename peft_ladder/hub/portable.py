"""Files meant for sharing never carry a path of the machine that wrote them.

A base model in a local folder is named by the folder's name in every shared file (adapter configs, the
card, `peft_ladder.json`); the absolute path, which `load_adapted` needs on this machine, goes to a dotfile
(`LOCAL_FILE`) that push and export leave out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from peft_ladder.io import write_text_atomic

LOCAL_FILE = ".peft_ladder_local.json"
_PREFIXES = ("hf:", "timm:", "local-dir:")


def portable(value: Any) -> Any:
    """`value` with every absolute filesystem path (also after an `hf:` / `timm:` / `local-dir:` prefix)
    replaced by its last component, recursively through dicts and lists."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str):
        prefix = next((p for p in _PREFIXES if value.startswith(p)), "")
        rest = value[len(prefix) :]
        if os.path.isabs(rest) and len(Path(rest).parts) > 1:
            return prefix + Path(rest).name
    return value


_LOAD_TIME_KEYS = ("is_local", "local_files_only", "cache_dir", "force_download", "token", "_commit_hash")


def scrub_json_files(folder: Path) -> None:
    """Rewrite every JSON file the libraries wrote into `folder` (configs, tokenizer configs) portably."""
    for path in folder.rglob("*.json"):
        if path.name == LOCAL_FILE:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue
        clean = portable(data)
        if path.name == "tokenizer_config.json":
            # How this machine loaded the tokenizer (offline, from a folder), not a property of the tokenizer: a
            # saved `local_files_only: true` would make every later load refuse the network.
            clean = {k: v for k, v in clean.items() if k not in _LOAD_TIME_KEYS}
        if clean != data:
            write_text_atomic(path, json.dumps(clean, indent=2))


def shared_files(folder: Path) -> list[Path]:
    """What a push or an export takes from an artifact folder: everything but the local-only dotfiles."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith("."))


def base_reference(name: str, hub_id: str | None) -> str:
    """How shared files name a base checkpoint: its Hub id, else the local folder's name (the card says so)."""
    return hub_id or portable(name.removeprefix("hf:").removeprefix("timm:"))
