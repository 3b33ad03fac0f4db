"""`export`: a rung as a standalone folder in its library's own layout, loadable without peft_ladder.

- Adapter rungs are merged into the base (`merge_and_unload`, the trained head kept); delta rungs are folded
  into it; full rungs are saved as they are.
- timm models: `config.json` (architecture, pretrained_cfg with the training preprocessing, label names) and
  `model.safetensors`, as `timm.models.save_for_hf` writes: `timm.create_model("local-dir:<folder>", pretrained=True)`.
- transformers image models: `save_pretrained` plus an image processor: `AutoModelForImageClassification`,
  `pipeline("image-classification")`.
- transformers text models whose pooling is their family's stock head (BERT's pooler): the stock
  `...ForSequenceClassification` with the same weights. Other poolings (mean for sentence-transformers
  checkpoints) have no stock class: the folder carries `modeling_peft_ladder.py` (torch and transformers
  only) and loads with `trust_remote_code=True`.
The outputs equal the unmerged model's (tests check every strategy on every tiny family).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

# Light imports only at the top: a refused export (a wrong path, a live run, --out inside the run) says so in
# a fraction of a second; the model stack is imported when the export is written.
from peft_ladder.artifact_checks import ARTIFACT_FILE, read_meta
from peft_ladder.errors import UserError
from peft_ladder.hub.portable import copy_shared, portable, scrub_json_files
from peft_ladder.io import disk_full_is_a_user_error, swap_into_place, write_text_atomic
from peft_ladder.run_folder import run_kind
from peft_ladder.run_lock import LOCK_FILE, FolderLocked, locked_by_another

if TYPE_CHECKING:
    from peft_ladder.backbones.backbone import Backbone
    from peft_ladder.tasks import Task


def artifact_folder(path: str | Path) -> Path:
    """The artifact folder of `path`: an artifact itself, or a train / ladder run folder holding `artifact/`."""
    path = Path(path)
    for candidate in (path, path / "artifact"):
        if (candidate / ARTIFACT_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"{path} holds no peft_ladder artifact ({ARTIFACT_FILE} is missing there and in {path / 'artifact'}): pass "
        "a run's output_dir or an artifact folder."
    )


class WritesIntoItsSource(UserError, ValueError):
    """An export or a push would write into the run or artifact it reads, or replace what it did not write."""


# An export's own mark (a dotfile: never pushed): what `--overwrite` may replace.
EXPORT_MARKER = ".peft_ladder_export.json"


def check_destination(given: Path, source: Path, dest: Path) -> None:
    """`dest` is neither the run nor the artifact read (`given`, its artifact `source`, any run folder around
    them), nor inside or around one of them, nor a folder a live run holds: whatever the flags."""
    dest = dest.resolve()
    around = [given.resolve(), source.resolve()]
    around += [a for a in source.resolve().parents if run_kind(a) is not None]
    for read in around:
        if dest == read or dest.is_relative_to(read) or read.is_relative_to(dest):
            where = "is" if dest == read else ("is inside" if dest.is_relative_to(read) else "holds")
            raise WritesIntoItsSource(
                f"--out {dest} {where} {read}, which this export reads: choose a folder outside it (with "
                "--overwrite too, an export never writes into the run it reads)."
            )
    holder = locked_by_another(dest) if dest.is_dir() else None
    if holder:
        raise FolderLocked(f"--out {dest} is in use by a running peft_ladder {holder}: choose another folder.")


def export(
    path: str | Path,
    out: str | Path,
    *,
    merge: bool = True,
    overwrite: bool = False,
    base: str | None = None,
    token: str | None = None,
) -> Path:
    """Write `path`'s rung to `out` as a standalone folder (see the module docstring).

    Args:
        path: an artifact folder or a run folder (`output_dir`) holding `artifact/`.
        out: the new folder; refused when it exists unless `overwrite`.
        merge: fold adapters into the base. False keeps an adapter rung as a clean peft adapter folder.
        base: the base checkpoint, when it was a local folder on another machine.
        token: Hub token for a private base; used for the download only.

    Returns:
        The folder written.
    """
    source, dest = artifact_folder(path), Path(out)
    check_destination(Path(path), source, dest)
    # The run read and its artifact, and any folder around them that a run has locked (a ladder holding the rung).
    around = [p for p in source.resolve().parents if (p / LOCK_FILE).is_file()]
    for read in dict.fromkeys((Path(path).resolve(), source.resolve(), *around)):
        holder = locked_by_another(read) if read.is_dir() else None
        if holder:  # its artifact may be half-way through being replaced
            raise FolderLocked(
                f"{read} is being written by a running peft_ladder {holder}: export it when that run ends."
            )
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True (--overwrite) or choose another folder.")
    if dest.is_dir() and not dest.is_symlink():
        check_replaceable(dest)
    meta = read_meta(source / ARTIFACT_FILE)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with disk_full_is_a_user_error(dest.parent, "the export"):
            _write_export(source, meta, tmp, merge=merge, base=base, token=token)
        write_text_atomic(tmp / EXPORT_MARKER, json.dumps({"source": portable(str(source))}) + "\n")
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def check_replaceable(dest: Path) -> None:
    """`--overwrite` replaces an earlier export of ours (its marker says so) or an empty folder, never a run or a
    folder of someone's files."""
    if (dest / EXPORT_MARKER).is_file():
        return
    held = sorted(p.name for p in dest.iterdir())
    if held:
        kind = run_kind(dest)
        what = f"a {kind} run" if kind else "files no export of ours wrote"
        raise WritesIntoItsSource(
            f"--out {dest} holds {what} ({', '.join(held[:6])}{', ...' if len(held) > 6 else ''}): --overwrite replaces "
            f"only an earlier export (it carries {EXPORT_MARKER}) or an empty folder; choose another folder. Nothing "
            "was removed."
        )


def fold_target_scale(backbone: Backbone, task: Task) -> None:
    """A regression export's head outputs the target's units (`target_scale.py`), stock tools knowing nothing of
    the standardisation it trained on."""
    from peft_ladder.target_scale import fold, foldable_head

    linear = foldable_head(backbone)
    if linear is None:
        raise ValueError(
            f"a regression export folds the target's scale (mean {task.target_mean:.4g}, std {task.target_std:.4g}) "
            f"into a linear head, and the head {backbone.layout.head_modules} of {backbone.spec.name} is not one "
            "linear layer with a bias; use the artifact with `load_adapted` or `peft-ladder predict`, which scale it back."
        )
    fold(linear, task)


def _write_export(source: Path, meta: dict, tmp: Path, *, merge: bool, base: str | None, token: str | None) -> None:
    """The export's files into the (new, empty) folder `tmp`."""
    from peft_ladder.artifacts import load_adapted
    from peft_ladder.hub.card import write_card
    from peft_ladder.hub.files import write_inference_files
    from peft_ladder.hub.notes import NOTE_FIGURE, read_note
    from peft_ladder.hub.standalone import save_standalone
    from peft_ladder.logs import library_quiet
    from peft_ladder.tasks import Task

    if meta["kind"] == "adapter" and not merge:
        copy_shared(source, tmp)  # the adapter config names its base portably
    else:
        adapted = load_adapted(source, base=base, token=token)
        model = adapted.model.merge_and_unload() if meta["kind"] == "adapter" else adapted.model
        task = Task.from_dict(meta.get("task"))
        if task.name == "regression":
            fold_target_scale(adapted.backbone, task)
        config = getattr(model, "config", None)
        if hasattr(config, "problem_type"):  # stock tools then take the task's loss
            config.problem_type = task.problem_type
        with library_quiet():  # no "Writing model shards" bar: the command prints the folder it wrote
            layout = save_standalone(model, adapted.backbone, tmp)
            write_inference_files(adapted.backbone, tmp, with_config=False)
        scrub_json_files(tmp)
        note = read_note(source)
        if note is not None and (source / NOTE_FIGURE).is_file():
            shutil.copyfile(source / NOTE_FIGURE, tmp / NOTE_FIGURE)
        write_card(tmp, meta, note, layout=layout, source=source)
