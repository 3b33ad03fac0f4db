"""Checkpoints that need no unpickling: `checkpoints/step_N` folders written whole or not at all, last K kept.

Accelerate's `save_state` pickles the registered objects and the RNG states, and `load_state` unpickles them
(`weights_only=False`): a crafted checkpoint then runs code on `--resume`. Ours is tensors and JSON only:

    manifest.json            format, run id, step, processes, the files below with their sizes and hashes
    config.yaml              the run's resolved config (resume compares it)
    trainable.safetensors    what training changes (trainable parameters, updating BatchNorm statistics)
    best.safetensors         the best epoch's tensors (early stopping)
    optimizer.pt             the optimizer's state dict, read back with torch.load(weights_only=True)
    scheduler.json, train_state.json
    rng_<rank>.safetensors / rng_<rank>.json   torch (CPU, CUDA), numpy and Python RNG states per process

A folder holding anything else (Accelerate's `*.pkl`, `*.bin`) is refused before a byte of it is read.

A checkpoint is checked before it is trusted: each file's size and xxh3-128 hash against the manifest (checkpoints
written before the manifest held them: every file is read, its errors caught). `--resume` passes over a damaged
one (a file cut short by a crash or a full disk) to the newest intact one and says which file was wrong.
A save that fails (a full disk) removes its temporary folder and keeps the checkpoints already there.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import pickle
import random
import re
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xxhash
import yaml
from accelerate import Accelerator
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from peft_ladder.config import RunConfig
from peft_ladder.io import DiskFull, free_bytes, out_of_space, swap_into_place, write_text_atomic

logger = logging.getLogger(__name__)

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
HASH = "xxh3_128"  # xxhash reads several GB/s: checking a checkpoint costs about what reading it does


# Settings a resumed run may change: they decide what is logged, kept or how fast evaluation runs, never what
# is learned. Everything else must match the checkpoint's config.
SAFE_TO_CHANGE_ON_RESUME = frozenset(
    {
        "checkpoint.every_n_steps",
        "checkpoint.keep_last",
        "checkpoint.each_epoch",
        "checkpoint.epoch_interval_seconds",
        "log_with",
        "project_name",
        "data.num_workers",
        "train.eval_batch_size",
        "overwrite_output_dir",
        "output_dir",  # a copied or moved run folder resumes where it now is
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


class CheckpointDamaged(CheckpointRefused):
    """A checkpoint file that is missing, cut short or changed since it was written; `file` names it. `--resume`
    passes over such a checkpoint to an older intact one."""

    def __init__(self, folder: Path, file: str, why: str):
        super().__init__(
            f"{folder}: {file} {why}. This checkpoint cannot be resumed: --resume takes the newest intact one, "
            "--resume-from another checkpoint folder."
        )
        self.folder, self.file, self.why = folder, file, why


class CheckpointNotSaved(DiskFull):
    """A checkpoint could not be written for want of disk space; its temporary folder is gone, the earlier
    checkpoints are kept."""


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
    folder: Path | None = None  # where it was read from (None: not written yet)


class _NotSet:
    """A key the checkpoint's config does not have (written by a version without it)."""

    def __repr__(self) -> str:
        return "not set"


NOT_SET = _NotSet()


@dataclass
class ConfigChanges:
    """How this run's config differs from a checkpoint's, by dotted key."""

    allowed: dict[str, tuple[Any, Any]]  # SAFE_TO_CHANGE_ON_RESUME: (checkpoint's value, this run's)
    # Keys the checkpoint's config lacks (a later version added them) whose value here is their default: the
    # checkpoint's run had that behaviour, so nothing changes.
    new_defaults: dict[str, Any]
    refused: dict[str, tuple[Any, Any]]  # anything else: it can change what is learned

    def accepted(self) -> dict[str, tuple[Any, Any]]:
        """Every difference resume goes on with: (checkpoint's value or None, this run's)."""
        return {**self.allowed, **{k: (None, v) for k, v in self.new_defaults.items()}}


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
    renamed into place once every process has written and every file is on the disk; then prune this run's
    checkpoints older than this one, keeping `keep_last` in all (never another run's, never a newer one).

    Raises:
        CheckpointNotSaved: the disk filled up; the temporary folder is removed, the earlier checkpoints kept.
    """
    final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
    data = payload() if accelerator.is_main_process else None  # built first: its errors are never the disk's
    try:
        if accelerator.is_main_process:
            root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        accelerator.wait_for_everyone()
        _save_rng(tmp, accelerator.process_index)
        if data is not None:
            _write_payload(tmp, data)
        accelerator.wait_for_everyone()
        if data is not None:
            _write_manifest(tmp, data, step, accelerator.num_processes)  # last: a manifest means complete
            swap_into_place(tmp, final)
            _fsync(root)  # the rename itself reaches the disk
    except Exception as err:
        free_at_failure = free_bytes(root)
        shutil.rmtree(tmp, ignore_errors=True)
        if out_of_space(err, free_at_failure):
            raise _not_saved(root, step) from err
        raise
    except BaseException:  # interrupted (Ctrl-C): no half-written folder stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if data is not None:
        older = [p for p in list_checkpoints(root, data.run_id) if _step(p) < step]
        for old in older[: max(0, len(older) - (keep_last - 1))]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator: Accelerator) -> Payload:
    """Check a checkpoint written by `save_checkpoint`, read it, and restore this process's RNG states (only once
    every file has been read).

    Raises:
        CheckpointRefused: not this format, files it does not know (a pickle among them), or written by
            another number of processes.
        CheckpointDamaged: a file is missing, cut short, changed since it was written, or cannot be read.
    """
    manifest = verify_checkpoint(path)
    if manifest["num_processes"] != accelerator.num_processes:
        raise CheckpointRefused(
            f"{path} was written by {manifest['num_processes']} process(es); this run has {accelerator.num_processes}: "
            "resume with the same number of processes."
        )
    rank = accelerator.process_index
    payload = Payload(
        trainable=_read(path, "trainable.safetensors", _load_safetensors),
        best=_read(path, "best.safetensors", _load_safetensors),
        optimizer=_read(path, "optimizer.pt", _load_tensors_only),
        scheduler=_read(path, "scheduler.json", _load_json),
        train_state=_read(path, "train_state.json", _load_json),
        config_yaml=_read(path, "config.yaml", _load_yaml_text),
        run_id=manifest["run_id"],
        folder=path,
    )
    rng = _read(path, f"rng_{rank}.safetensors", _load_safetensors)
    rng_extra = _read(path, f"rng_{rank}.json", _load_json)
    _set_rng(rng, rng_extra)
    return payload


def load_for_resume(resume: str, root: Path, accelerator: Accelerator) -> Payload:
    """The checkpoint a run continues from, read (see `load_checkpoint`).

    Args:
        resume: `latest`: the newest intact checkpoint under `root`; a damaged newer one (a file cut short by a
            crash or a full disk) is passed over with a warning naming the file, and left as it is. Otherwise
            the checkpoint folder to read, which must be intact.
        root: the run's `checkpoints` folder.

    Raises:
        FileNotFoundError: no checkpoint under `root`, or no such folder.
        CheckpointRefused: a checkpoint peft_ladder will not read, or (`latest`) none of them is intact.
        CheckpointDamaged: the folder named is damaged.
    """
    if resume != "latest":
        path = Path(resume)
        if not path.is_dir():
            raise FileNotFoundError(f"--resume-from {resume}: no such checkpoint folder.")
        return load_checkpoint(path, accelerator)
    found = list_checkpoints(root)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint under {root}; start without --resume.")
    damaged: list[CheckpointDamaged] = []
    for path in reversed(found):
        try:
            payload = load_checkpoint(path, accelerator)
        except CheckpointDamaged as err:
            damaged.append(err)
            continue
        if damaged:
            logger.warning(
                f"--resume: passed over {_describe(damaged)}; resuming from the newest intact checkpoint, "
                f"{path.name}. The damaged one is left as it is (this run replaces it when it gets there)."
            )
        return payload
    raise CheckpointRefused(
        f"--resume: no intact checkpoint under {root}: {_describe(damaged)}. Restore the folder from a copy, or "
        "start the run again (--overwrite removes this one)."
    )


def verify_checkpoint(path: Path) -> dict[str, Any]:
    """The manifest of a checkpoint whose files are all there as they were written: each file's size and hash
    against the manifest's (checkpoints from before the manifest held them: the files it lists are there; reading
    them checks the rest).

    Raises:
        CheckpointRefused: not a peft_ladder checkpoint, or files it does not know (never read).
        CheckpointDamaged: a file missing, or another size or hash than the manifest's.
    """
    manifest = _checked_manifest(path)
    checksums = manifest.get("checksums", {})
    if not isinstance(checksums, dict) or not isinstance(manifest.get("files", []), list):
        raise CheckpointDamaged(
            path, MANIFEST, "is malformed (its `checksums` or `files` are not what peft_ladder writes)"
        )
    for name in [*manifest.get("files", []), *checksums]:
        if not (isinstance(name, str) and (name in _FIXED_FILES or _RNG_FILE.match(name))):
            raise CheckpointDamaged(path, MANIFEST, f"is malformed (it names {name!r}, not a checkpoint file)")
        if not (path / name).is_file():
            raise CheckpointDamaged(path, name, "is missing")
    for name, expected in checksums.items():
        file = path / name
        size = file.stat().st_size
        written = expected.get("bytes") if isinstance(expected, dict) else None
        if not isinstance(written, int):
            raise CheckpointDamaged(path, MANIFEST, f"is malformed (no size for {name})")
        if size != written:
            how = "cut short" if size < written else "changed since"
            raise CheckpointDamaged(path, name, f"has {size:,} bytes where {written:,} were written ({how})")
        if HASH in expected and _digest(file) != expected[HASH]:
            raise CheckpointDamaged(path, name, f"does not match its {HASH} hash in {MANIFEST} (changed since written)")
    return manifest


def compare_configs(old_yaml: str, new_yaml: str) -> ConfigChanges:
    """Sort the differences between a checkpoint's config and this run's by whether resuming may go on.

    A key the checkpoint's config lacks was added by a later version: it is its default there (the checkpoint's
    config validated again, with this version's defaults), and a run that keeps that default changes nothing.
    """
    old_tree = yaml.safe_load(old_yaml) or {}
    old, new = _flat(old_tree), _flat(yaml.safe_load(new_yaml) or {})
    try:
        filled = _flat(RunConfig.model_validate(old_tree).model_dump(mode="json"))
    except ValidationError:  # a key this version no longer has, or a value it refuses: no defaults to offer
        filled = old
    changes = ConfigChanges(allowed={}, new_defaults={}, refused={})
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, NOT_SET), new.get(key, NOT_SET)
        if before == after:
            continue
        if before is NOT_SET and key in filled and filled[key] == after:
            changes.new_defaults[key] = after
        elif key in SAFE_TO_CHANGE_ON_RESUME:
            changes.allowed[key] = (None if before is NOT_SET else before, None if after is NOT_SET else after)
        else:
            changes.refused[key] = (before, after)
    return changes


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _step(path: Path) -> int:
    return int(path.name.removeprefix("step_"))


def _checked_manifest(path: Path) -> dict[str, Any]:
    if not (path / MANIFEST).is_file():
        raise CheckpointRefused(f"{path} has no {MANIFEST}: it was not written by peft_ladder (or not completely).")
    unknown = sorted(p.name for p in path.iterdir() if p.name not in _FIXED_FILES and not _RNG_FILE.match(p.name))
    if unknown:
        raise CheckpointRefused(
            f"{path} holds files peft_ladder does not read ({', '.join(unknown)}); a checkpoint that needs "
            "unpickling is refused, since loading it could run code. Resume only from checkpoints peft_ladder wrote."
        )
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointDamaged(path, MANIFEST, f"cannot be read ({_reason(err)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise CheckpointRefused(f"{path}: format {found!r} is not {FORMAT!r}.")
    lacking = [key for key in ("run_id", "num_processes") if key not in manifest]
    if lacking:
        raise CheckpointDamaged(path, MANIFEST, f"is malformed (no {', '.join(lacking)})")
    return manifest


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


# ---- writing ----------------------------------------------------------------------------------------------


def _write_payload(folder: Path, data: Payload) -> None:
    save_file(data.trainable, str(folder / "trainable.safetensors"))
    save_file(data.best, str(folder / "best.safetensors"))
    torch.save(data.optimizer, folder / "optimizer.pt")
    write_text_atomic(folder / "scheduler.json", _dumps(data.scheduler))
    write_text_atomic(folder / "train_state.json", _dumps(data.train_state))
    write_text_atomic(folder / "config.yaml", data.config_yaml)


def _write_manifest(folder: Path, data: Payload, step: int, num_processes: int) -> None:
    """Every file's size and hash, each file flushed to the disk first: after a power cut the manifest never
    describes data the disk does not hold (a rename can reach the disk before the data it names)."""
    checksums = {}
    for path in sorted(folder.iterdir()):
        _fsync(path)
        checksums[path.name] = {"bytes": path.stat().st_size, HASH: _digest(path)}
    manifest = {
        "format": FORMAT,
        "run_id": data.run_id,
        "step": step,
        "num_processes": num_processes,
        "files": sorted(checksums),
        "checksums": checksums,
    }
    write_text_atomic(folder / MANIFEST, _dumps(manifest))
    _fsync(folder / MANIFEST)
    _fsync(folder)


def _digest(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file or a folder (its entries: renames) to the disk; a file system that cannot says so quietly."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _not_saved(root: Path, step: int) -> CheckpointNotSaved:
    earlier = [p for p in list_checkpoints(root) if _step(p) < step]
    free = free_bytes(root)
    room = f"{_size(free)} free" if free is not None else "free space unknown"
    if earlier:
        last = earlier[-1]
        size = sum(f.stat().st_size for f in last.iterdir() if f.is_file())
        need = f"; a checkpoint of this run takes about {_size(size)}, the size of {last.name}"
        then = (
            f"{last.name} is kept: free space or move the run folder to a larger disk, then continue with --resume "
            "(output_dir may name the moved folder)"
        )
    else:
        need = ""
        then = (
            "no earlier checkpoint exists: free space or choose an output_dir on a larger disk, then run again "
            "(--overwrite replaces this run's folder)"
        )
    err = CheckpointNotSaved(
        f"checkpoint step_{step} was not saved: no space left on the disk holding {root} ({room} once the partial "
        f"step_{step}.tmp was removed{need}). {then}."
    )
    err.errno = errno.ENOSPC
    return err


def _size(n: int | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


# ---- reading ----------------------------------------------------------------------------------------------


def _read(folder: Path, name: str, reader: Callable[[Path], Any]) -> Any:
    """`reader(folder / name)`; any failure is a CheckpointDamaged naming the file (a checkpoint from before
    the manifest held hashes is only checked this way)."""
    file = folder / name
    try:
        if file.stat().st_size == 0:
            raise CheckpointDamaged(folder, name, "is empty (0 bytes)")
        return reader(file)
    except CheckpointDamaged:
        raise
    except FileNotFoundError:
        raise CheckpointDamaged(folder, name, "is missing") from None
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():  # never unpickled beyond tensors: nothing in it ran
            raise CheckpointDamaged(
                folder,
                name,
                "holds objects beyond tensors, refused by torch.load(weights_only=True): not read, "
                "since unpickling it could run code",
            ) from None
        raise CheckpointDamaged(folder, name, f"cannot be read ({_reason(err)})") from None
    except Exception as err:  # noqa: BLE001 - a torn file fails in the reader's own way (EOFError, zip, header)
        raise CheckpointDamaged(folder, name, f"cannot be read ({_reason(err)})") from None


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else "it ends early"
    return f"{type(err).__name__}: {text[:200]}"


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _load_tensors_only(path: Path) -> Any:
    with warnings.catch_warnings():  # torch's note on an old pickle protocol: the refusal that follows says it all
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True)


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _load_yaml_text(path: Path) -> str:
    text = path.read_text()
    yaml.safe_load(text)  # torn YAML fails here, naming the file, not later in the config comparison
    return text


def _describe(damaged: list[CheckpointDamaged]) -> str:
    return "; ".join(f"{err.folder.name} ({err.file} {err.why})" for err in damaged)


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


def _set_rng(tensors: dict[str, torch.Tensor], extra: dict[str, Any]) -> None:
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
