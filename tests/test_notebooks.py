"""The four notebooks run top to bottom at their tiny size (PEFT_LADDER_NOTEBOOK_SIZE=tiny), offline, in a fresh
kernel; after the last cell a check reads what the notebook computed (the decision, the reload's logits)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# Run in the kernel after the notebook's own cells, on the notebook's own variables.
CHECKS = {
    "01_quickstart.ipynb": """
assert note.decision.recommended in [r.id for r in note.rungs]
assert (WORK / "ladder" / "transfer_note.png").stat().st_size > 0
assert adapted.strategy == "lora"
""",
    "02_vision_ladder.ipynb": """
assert note.scratch is not None and note.decision.recommended
assert (ours - logits).abs().max().item() < 1e-4  # the stock timm reload is the rung itself
""",
    "03_text_ladder.ipynb": """
assert logits.shape == (2, len(names))
assert sorted(model.config.id2label.values()) == sorted(names)  # the label names travelled with the export
""",
    "04_practice.ipynb": """
assert any(flag.kind == "negative_transfer" for flag in q4.flags)  # the damaged backbone is caught
assert q1.decision.recommended and q3.decision.recommended
""",
}


def test_every_notebook_has_a_check():
    assert sorted(CHECKS) == sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKS))
def test_notebook_runs_offline_at_its_tiny_size(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_LADDER_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's WORK folder lands here
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # saved cleared
    notebook.cells.append(nbformat.v4.new_code_cell(CHECKS[name]))
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on any failure
