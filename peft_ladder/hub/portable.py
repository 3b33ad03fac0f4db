"""Files meant for sharing never carry a path of the machine that wrote them.

A base model in a local folder is named by the folder's name in every shared file (adapter configs, the
card, `peft_ladder.json`); on this machine, where a stock loader should find it, the adapter config names its
absolute path (push and export rewrite it), and `load_adapted` reads it from a dotfile (`LOCAL_FILE`) that push
and export leave out.
"""

from __future__ import annotations

import json
import os
import re
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
        # A path inside a sentence (a log line, a reason): its last component.
        return _EMBEDDED_PATH.sub(lambda m: Path(m.group(0)).name or m.group(0), value)
    return value


# An absolute POSIX path of two or more components inside text; not a URL's path (after ':' or '/') nor a ratio.
_EMBEDDED_PATH = re.compile(r"(?<![\w:/.~-])/(?:[\w.@+~-]+/)+[\w.@+~-]*")


_LOAD_TIME_KEYS = ("is_local", "local_files_only", "cache_dir", "force_download", "token", "_commit_hash")


ADAPTER_CONFIG = "adapter_config.json"


def scrub_json_files(folder: Path, *, keep_base_path: bool = False) -> None:
    """Rewrite every JSON file the libraries wrote into `folder` (configs, tokenizer configs) portably.

    Args:
        keep_base_path: leave the adapter config's base as it is (a folder on this machine, which stock peft
            should find there); shared copies are scrubbed without it.
    """
    for path in folder.rglob("*.json"):
        if path.name == LOCAL_FILE or (keep_base_path and path.name == ADAPTER_CONFIG):
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
    return hub_id or portable(local_base_reference(name, None))


def local_base_reference(name: str, hub_id: str | None) -> str:
    """How files on this machine name a base checkpoint so that a stock loader finds it here: its Hub id (the
    Hugging Face cache), else the folder as an absolute path. `scrub_json_files` makes shared copies portable."""
    if hub_id:
        return hub_id
    target = name.removeprefix("hf:").removeprefix("timm:")
    prefix = "local-dir:" if target.startswith("local-dir:") else ""
    path = target.removeprefix(prefix)
    return prefix + str(Path(path).resolve()) if Path(path).exists() else target


# Where a push keeps the rung's own files beside its standalone export (`load_adapted(repo_id)` looks there).
RUNG_FOLDER = "rung"


def copy_shared(source: Path, dest: Path) -> Path:
    """Copy `source`'s shared files to `dest` (created), with portable names in every JSON file."""
    import shutil

    for file in shared_files(source):
        target = dest / file.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    scrub_json_files(dest)
    return dest
