"""The transfer note inside artifact folders: every kept rung, the published artifact and every export carry a
portable copy of the ladder's note (`transfer_note.json` / `.md`), its figure and a model card built from both,
so a folder shared on its own still says why this depth was chosen."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ladder.backbones.loader import ARTIFACT_FILE
from peft_ladder.hub.card import write_card
from peft_ladder.hub.portable import portable

if TYPE_CHECKING:
    from peft_ladder.ladder.note import TransferNote

NOTE_FILE = "transfer_note.json"
NOTE_FIGURE = "transfer_note.png"


def read_note(folder: Path) -> TransferNote | None:
    """The note an artifact folder carries (None: it carries none)."""
    from peft_ladder.ladder.note import TransferNote  # the ladder package imports the hub's card: no cycle

    path = Path(folder) / NOTE_FILE
    if not path.is_file():
        return None
    return TransferNote.model_validate_json(path.read_text(encoding="utf-8"))


def shareable(note: TransferNote, root: Path) -> TransferNote:
    """`note` without a path of this machine: paths inside the run folder `root` (the rungs' artifacts) relative to
    it, where `peft-ladder push --rung` and `predict --rung` find them however the folder moves; any other absolute
    path by its last component."""
    from peft_ladder.ladder.note import TransferNote

    root = Path(root).resolve()

    def local(value: object) -> object:
        if isinstance(value, dict):
            return {k: local(v) for k, v in value.items()}
        if isinstance(value, list):
            return [local(v) for v in value]
        # A path as the run wrote it: absolute, or relative to where it ran.
        if isinstance(value, str) and "/" in value and Path(value).exists():
            path = Path(value).resolve()
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix() or "."
        return value

    return TransferNote.model_validate(portable(local(note.model_dump(mode="json"))))


def attach_note(note: TransferNote, artifact: Path, figure: Path | None) -> None:
    """Give `artifact` `note` (made `shareable` by the caller), the figure, and a card built from both."""
    from peft_ladder.ladder.note import write_note

    write_note(note, artifact)
    if figure is not None and figure.is_file():
        shutil.copyfile(figure, artifact / NOTE_FIGURE)
    meta = json.loads((artifact / ARTIFACT_FILE).read_text())
    write_card(artifact, meta, note=note)
