"""What `load_adapted` checks before it trusts an artifact folder: `peft_ladder.json` parses and has what a
loader needs, every weights file is the one `save_adapted` wrote (size and content hash, recorded in
`peft_ladder.json`), and the base the folder names rebuilds the model the weights were trained in (the same
parameter count, part by part, as the saved report). A mismatch is one error naming the file and what differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import xxhash

from peft_ladder.errors import UserError

# What marks a folder as a peft_ladder artifact (kept here, with no heavy import: the CLI's checks read it first).
ARTIFACT_FILE = "peft_ladder.json"

# What every loader reads from `peft_ladder.json`, with its type.
REQUIRED = {
    "format_version": int,
    "kind": str,
    "source": str,
    "modality": str,
    "strategy": str,
    "strategy_config": dict,
    "backbone": dict,
    "label2id": dict,
    "report": dict,
}
_CHUNK = 1 << 22


class ArtifactDamaged(UserError, ValueError):
    """A file of the artifact is missing, cut off, changed, or does not belong to the base it names."""


def read_meta(path: Path) -> dict[str, Any]:
    """`peft_ladder.json`, parsed and checked for the keys every loader reads."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArtifactDamaged(
            f"{path} is not valid JSON ({err}): the artifact is damaged; save or download it again."
        ) from None
    if not isinstance(meta, dict):
        raise ArtifactDamaged(f"{path} holds a {type(meta).__name__}, not peft_ladder's artifact description.")
    wrong = [k for k, kind in REQUIRED.items() if not isinstance(meta.get(k), kind)]
    if wrong:
        raise ArtifactDamaged(
            f"{path} lacks or mistypes {', '.join(wrong)}: it is not a complete peft_ladder artifact description; "
            "save or download the artifact again."
        )
    return meta


def weights_manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """Every safetensors file under `folder`, by its path relative to it: size in bytes and xxh3-64 of its bytes."""
    return {
        p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "xxh3_64": _digest(p)}
        for p in sorted(Path(folder).rglob("*.safetensors"))
    }


def check_weights(folder: Path, manifest: dict[str, dict[str, Any]] | None, meta_file: Path) -> None:
    """Each file `manifest` lists is there with its size and hash (an artifact saved before manifests: none)."""
    for name, expected in (manifest or {}).items():
        path = Path(folder) / name
        if not path.is_file():
            raise ArtifactDamaged(f"{path} is missing; {meta_file} lists it: the artifact is incomplete.")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ArtifactDamaged(
                f"{path} has {size:,} bytes where {meta_file} recorded {expected['bytes']:,}: it was cut off or "
                "replaced; save or download the artifact again."
            )
        if _digest(path) != expected["xxh3_64"]:
            raise ArtifactDamaged(
                f"{path} does not hash to what {meta_file} recorded: its content changed since it was saved; save "
                "or download the artifact again."
            )


def check_same_base(saved: dict[str, Any], rebuilt: dict[str, Any], meta_file: Path, base: str) -> None:
    """The rebuilt model has the saved one's parameters, part by part (`TrainableReport.to_dict()` of each)."""
    before = {p["part"]: p["total"] for p in saved.get("parts", [])}
    after = {p["part"]: p["total"] for p in rebuilt.get("parts", [])}
    if not before or before == after:
        return
    differ = [
        f"{part}: {before.get(part, 0):,} -> {after.get(part, 0):,}"
        for part in {**before, **after}
        if before.get(part) != after.get(part)
    ]
    raise ArtifactDamaged(
        f"the base {base} that {meta_file} names does not build the model these weights were trained in "
        f"(parameters per part, saved -> rebuilt: {'; '.join(differ[:6])}): pass the base it was trained on "
        "(--base on the command line, base= in Python), or save the artifact again."
    )


def _digest(path: Path) -> str:
    digest = xxhash.xxh3_64()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
