"""Checkpoints that need no unpickling: `checkpoints/step_N` folders written whole or not at all, last K kept.

Accelerate's `save_state` pickles the registered objects and the RNG states, and `load_state` unpickles them
(`weights_only=False`): a crafted checkpoint then runs code on `--resume`. Ours is tensors and JSON only:

    manifest.json            format, run id, step, processes, the files below
    config.yaml              the run's resolved config (resume compares it)
    trainable.safetensors    what training changes (trainable parameters, updating BatchNorm statistics)
    best.safetensors         the best epoch's tensors (early stopping)
    optimizer.pt             the optimizer's state dict, read back with torch.load(weights_only=True)
    scheduler.json, train_state.json
    rng_<rank>.safetensors / rng_<rank>.json   torch (CPU, CUDA), numpy and Python RNG states per process

A folder holding anything else (Accelerate's `*.pkl`, `*.bin`) is refused before a byte of it is read.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from peft_ladder.io import swap_into_place, write_text_atomic

FORMAT = "peft_ladder-checkpoint-1"
MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_FIXED_FILES = {
    MANIFEST,
    "config.yaml",
    "trainable.safetensors",
    "best.safetensors",
    "optimizer.pt",
    "scheduler.json",
    "train_state.json",
}
_RNG_FILE = re.compile(r"^rng_\d+\.(safetensors|json)$")


# Settings a resumed run may change: they decide what is logged, kept or how fast evaluation runs, never what
# is learned. Everything else must match the checkpoint's config.
SAFE_TO_CHANGE_ON_RESUME = frozenset(
    {
        "checkpoint.every_n_steps",
        "checkpoint.keep_last",
        "checkpoint.each_epoch",
        "log_with",
        "project_name",
        "data.num_workers",
        "train.eval_batch_size",
        "overwrite_output_dir",
        "push_to_hub",
        "hub_model_id",
        "hub_private",
        "hub_license",
        "hub_revision",
        "cache.dir",
        "cache.max_gib",
    }
)


class CheckpointRefused(ValueError):
    """A checkpoint that peft_ladder will not read (wrong format, unexpected files, another config)."""


@dataclass
class Payload:
    """What a checkpoint holds, as the engine hands it over and gets it back."""

    trainable: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    train_state: dict[str, Any]
    config_yaml: str
    run_id: str


def list_checkpoints(root: Path, run_id: str | None = None) -> list[Path]:
    """Complete checkpoints under `root`, oldest first; only those of `run_id` when given."""
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if not (match and path.is_dir() and (path / MANIFEST).is_file()):
            continue
        if run_id is not None and _read_manifest(path).get("run_id") != run_id:
            continue
        found.append((int(match.group(1)), path))
    return [p for _, p in sorted(found)]


def save_checkpoint(
    accelerator: Accelerator, root: Path, step: int, keep_last: int, payload: Callable[[], Payload]
) -> Path:
    """Write `payload()` (built on the main process only) and every process's RNG state into `root/step_<step>`,
    renamed into place once every process has written; then prune this run's older checkpoints (never another
    run's)."""
    final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    _save_rng(tmp, accelerator.process_index)
    data = payload() if accelerator.is_main_process else None
    if data is not None:
        save_file(data.trainable, str(tmp / "trainable.safetensors"))
        save_file(data.best, str(tmp / "best.safetensors"))
        torch.save(data.optimizer, tmp / "optimizer.pt")
        write_text_atomic(tmp / "scheduler.json", _dumps(data.scheduler))
        write_text_atomic(tmp / "train_state.json", _dumps(data.train_state))
        write_text_atomic(tmp / "config.yaml", data.config_yaml)
    accelerator.wait_for_everyone()
    if data is not None:
        manifest = {
            "format": FORMAT,
            "run_id": data.run_id,
            "step": step,
            "num_processes": accelerator.num_processes,
            "files": sorted(p.name for p in tmp.iterdir()),
        }
        write_text_atomic(tmp / MANIFEST, _dumps(manifest))  # last: a manifest means the folder is complete
        swap_into_place(tmp, final)
        for old in list_checkpoints(root, data.run_id)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator: Accelerator) -> Payload:
    """Read a checkpoint written by `save_checkpoint` and restore this process's RNG states.

    Raises:
        CheckpointRefused: not this format, files it does not know (a pickle among them), or written by
            another number of processes.
    """
    manifest = _checked_manifest(path)
    if manifest["num_processes"] != accelerator.num_processes:
        raise CheckpointRefused(
            f"{path} was written by {manifest['num_processes']} process(es); this run has {accelerator.num_processes}: "
            "resume with the same number of processes."
        )
    payload = Payload(
        trainable=load_file(str(path / "trainable.safetensors")),
        best=load_file(str(path / "best.safetensors")),
        optimizer=torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True),
        scheduler=json.loads((path / "scheduler.json").read_text()),
        train_state=json.loads((path / "train_state.json").read_text()),
        config_yaml=(path / "config.yaml").read_text(),
        run_id=manifest["run_id"],
    )
    _load_rng(path, accelerator.process_index)
    return payload


def resolve_resume(resume: str, root: Path) -> Path:
    """`latest` -> newest complete checkpoint under `root`; otherwise a checkpoint folder path."""
    if resume == "latest":
        found = list_checkpoints(root)
        if not found:
            raise FileNotFoundError(f"--resume: no checkpoint under {root}; start without --resume.")
        return found[-1]
    path = Path(resume)
    if not path.is_dir():
        raise FileNotFoundError(f"--resume-from {resume}: no such checkpoint folder.")
    return path


def config_changes(old_yaml: str, new_yaml: str) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (checkpoint's value, this run's value) for every setting that differs."""
    old, new = _flat(yaml.safe_load(old_yaml) or {}), _flat(yaml.safe_load(new_yaml) or {})
    return {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _checked_manifest(path: Path) -> dict[str, Any]:
    if not (path / MANIFEST).is_file():
        raise CheckpointRefused(f"{path} has no {MANIFEST}: it was not written by peft_ladder (or not completely).")
    unknown = sorted(p.name for p in path.iterdir() if p.name not in _FIXED_FILES and not _RNG_FILE.match(p.name))
    if unknown:
        raise CheckpointRefused(
            f"{path} holds files peft_ladder does not read ({', '.join(unknown)}); a checkpoint that needs "
            "unpickling is refused, since loading it could run code. Resume only from checkpoints peft_ladder wrote."
        )
    manifest = _read_manifest(path)
    if manifest.get("format") != FORMAT:
        raise CheckpointRefused(f"{path}: format {manifest.get('format')!r} is not {FORMAT!r}.")
    return manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _save_rng(folder: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda_{i}"] = state
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, state, gauss_next = random.getstate()
    save_file(tensors, str(folder / f"rng_{rank}.safetensors"))
    write_text_atomic(
        folder / f"rng_{rank}.json",
        _dumps(
            {
                "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
                "python": {"version": version, "state": list(state), "gauss_next": gauss_next},
            }
        ),
    )


def _load_rng(folder: Path, rank: int) -> None:
    tensors = load_file(str(folder / f"rng_{rank}.safetensors"))
    extra = json.loads((folder / f"rng_{rank}.json").read_text())
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    n = extra["numpy"]
    np.random.set_state(
        (n["kind"], tensors["numpy_keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    p = extra["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))


def _dumps(value: Any) -> str:
    """Strict JSON: non-finite floats become null (the readers map them back where they mean infinity)."""
    return json.dumps(_finite(value), indent=2, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
