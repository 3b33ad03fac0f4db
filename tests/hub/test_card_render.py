"""Model cards as the Hub renders them: every table parses as a GitHub-flavoured table (markdown-it) with one body
row per item and no row leaked into a paragraph; the YAML header carries a licence (the recipe's, the base's card
or config on this machine, timm's registry, else `other` and a paragraph asking for one), a `library_name` the
Hub knows for the folder's layout, and Hub metric ids. Artifacts come from tiny text and image backbones; the
transfer note from the hub tests' session ladder, on the published artifact and on every export layout."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import ModelCard, constants
from markdown_it import MarkdownIt
from tiny_models import NUM_LABELS

from peft_ladder import apply_strategy, load_backbone, save_adapted
from peft_ladder.backbones.loader import ARTIFACT_FILE
from peft_ladder.cli import main as cli
from peft_ladder.config import load_config
from peft_ladder.hub.card import render_card
from peft_ladder.hub.export import export
from peft_ladder.ladder.note import BaselineModel, FlagModel, TransferNote

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny" / "minilm_1layer.yaml"
FROZEN = "What was frozen and what trained"
RESULTS = "Results of this run"
NOTE = "Why this depth: the transfer note"
SPLITS = {
    "validation": {"loss": 0.51, "n": 10, "metrics": {"accuracy": 0.7, "f1_macro": 0.61}},
    "test": {"loss": 0.62, "n": 12, "metrics": {"accuracy": 0.65, "f1_macro": 0.55}},
}
EXPORTS = {"export-transformers": "transformers", "export-remote-code": "transformers", "export-timm": "timm"}


# ---- reading a card the way the Hub does


@dataclass
class Table:
    section: str  # the heading above it
    header: int  # cells in the header row
    rows: list[int]  # cells in each body row


def _parse(card: ModelCard) -> tuple[list[Table], list[str], list[Any]]:
    """The tables of the card's body (with their section), its paragraphs' text and all block tokens."""
    tokens = MarkdownIt("commonmark").enable("table").parse(card.text)
    tables, paragraphs, section, in_body = [], [], "", False
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            section = tokens[i + 1].content
        elif tok.type == "table_open":
            tables.append(Table(section, 0, []))
        elif tok.type in ("tbody_open", "tbody_close"):
            in_body = tok.type == "tbody_open"
        elif tok.type == "th_open":
            tables[-1].header += 1
        elif tok.type == "tr_open" and in_body:
            tables[-1].rows.append(0)
        elif tok.type == "td_open":
            tables[-1].rows[-1] += 1
        elif tok.type == "paragraph_open":
            paragraphs.append(tokens[i + 1].content)
    return tables, paragraphs, tokens


def _tables(card: ModelCard, section: str) -> list[Table]:
    return [t for t in _parse(card)[0] if t.section == section]


def _check_tables(card: ModelCard) -> None:
    """Every table is whole: as many cells in each body row as in its header and delimiter rows (in the source
    too), and no paragraph that is a table row that fell out of its table."""
    tables, paragraphs, _ = _parse(card)
    assert tables
    for table in tables:
        assert table.rows and all(n == table.header for n in table.rows), table
    assert not [p for p in paragraphs if p.lstrip().startswith("|")], "a table row rendered as a paragraph"
    lines = card.text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|---"):  # a delimiter row: the header above it, the body rows below, no blank line
            cells = line.count("|") - 1
            assert lines[i - 1].count("|") - 1 == cells, lines[i - 1]
            body = []
            for row in lines[i + 1 :]:
                if not row.startswith("|"):
                    break
                body.append(row)
            assert body and all(row.count("|") - row.count("\\|") - 1 == cells for row in body), body


def _metric_types(card: ModelCard) -> dict[str, Any]:
    return {r.metric_type: r for r in card.data.eval_results or []}


# ---- artifacts from tiny backbones


def _artifact(tiny_dirs, tmp_path: Path, case_id: str, strategy: str, *, base: Path | None = None, **run) -> Path:
    base = base or tiny_dirs[case_id]
    adapted = apply_strategy(load_backbone(str(base), num_labels=NUM_LABELS), strategy)
    extra = {"metrics": {"splits": SPLITS}, "run_config": {"data": {"dataset": "org/tiny-data"}, **run}}
    return Path(save_adapted(adapted, tmp_path / f"{case_id}-{strategy}", extra=extra))


def _base_licence(base: Path) -> str | None:
    """What the tiny base folder itself says: timm's config.json carries `pretrained_cfg.license`."""
    config = json.loads((base / "config.json").read_text())
    return (config.get("pretrained_cfg") or {}).get("license")


RUNGS = [
    # case, strategy, folder kind, library_name the Hub should show
    ("hf_bert", "lora", "adapter", "peft"),
    ("hf_bert", "bitfit", "delta", None),
    ("hf_bert", "full", "full", "transformers"),
    ("timm_vit", "lora", "adapter", "peft"),
    ("timm_vit", "linear_probe", "delta", None),
    ("timm_vit", "full", "full", "timm"),
    ("hf_vit", "full", "full", "transformers"),
]


@pytest.mark.parametrize(("case_id", "strategy", "kind", "library"), RUNGS, ids=[f"{c}-{s}" for c, s, *_ in RUNGS])
def test_a_rung_card_renders_whole_tables_and_hub_metadata(tiny_dirs, tmp_path, case_id, strategy, kind, library):
    folder = _artifact(tiny_dirs, tmp_path, case_id, strategy)
    meta = json.loads((folder / ARTIFACT_FILE).read_text())
    assert meta["kind"] == kind
    card = ModelCard.load(folder / "README.md")
    _check_tables(card)
    (frozen,) = _tables(card, FROZEN)
    assert (frozen.header, len(frozen.rows)) == (4, len(meta["report"]["parts"]))
    (results,) = _tables(card, RESULTS)
    assert (results.header, len(results.rows)) == (3 + 2, len(SPLITS))
    assert not _tables(card, NOTE)

    data = card.data
    assert data.library_name == library
    assert data.datasets == ["org/tiny-data"]
    # The licence: what the base folder says (a timm config names one), else `other` and a paragraph that says
    # how to set it.
    expected = _base_licence(tiny_dirs[case_id]) or "other"
    assert data.license == expected
    asks = [p for p in _parse(card)[1] if "`hub_license`" in p]
    assert bool(asks) == (expected == "other")
    # Hub metric ids; the readable name and the compute args beside them.
    types = _metric_types(card)
    assert set(types) == {"accuracy", "f1"}
    assert types["f1"].metric_args == {"average": "macro"} and types["f1"].metric_name != "f1"
    assert {r.dataset_split for r in data.eval_results} == set(SPLITS)


def test_the_licence_comes_from_the_recipe_then_the_base_card(tiny_dirs, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(tiny_dirs["hf_bert"], base)
    (base / "README.md").write_text("---\nlicense: mit\n---\n\n# a tiny BERT\n")
    from_card = _artifact(tiny_dirs, tmp_path / "card", "hf_bert", "lora", base=base)
    assert ModelCard.load(from_card / "README.md").data.license == "mit"
    explicit = _artifact(tiny_dirs, tmp_path / "recipe", "hf_bert", "lora", base=base, hub_license="cc-by-4.0")
    card = ModelCard.load(explicit / "README.md")
    assert card.data.license == "cc-by-4.0"
    assert not [p for p in _parse(card)[1] if "`hub_license`" in p]


def test_the_licence_of_a_hub_base_is_read_from_the_cache_or_timm_never_the_network(tiny_dirs, tmp_path, monkeypatch):
    """A Hub base's README in the Hugging Face cache (an `other` licence keeps its name and link); a timm model by
    its registry name gets timm's own `pretrained_cfg` licence. HF_HUB_OFFLINE is set: nothing is downloaded."""
    from timm.models import get_pretrained_cfg

    cache, commit = tmp_path / "hub", "0" * 40
    snapshot = cache / "models--org--licensed" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (cache / "models--org--licensed" / "refs").mkdir()
    (cache / "models--org--licensed" / "refs" / "main").write_text(commit)
    (snapshot / "README.md").write_text("---\nlicense: other\nlicense_name: tiny-terms\nlicense_link: LICENSE\n---\n")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))

    meta = json.loads((_artifact(tiny_dirs, tmp_path, "hf_bert", "lora") / ARTIFACT_FILE).read_text())
    meta["backbone"] |= {"name": "hf:org/licensed", "hub_id": "org/licensed"}
    data = render_card(meta, layout="adapter", library="peft").data
    assert (data.license, data.license_name, data.license_link) == ("other", "tiny-terms", "LICENSE")
    assert data.base_model == "org/licensed"

    meta = json.loads((_artifact(tiny_dirs, tmp_path, "timm_vit", "lora") / ARTIFACT_FILE).read_text())
    meta["backbone"] |= {"name": "timm:resnet50.tv_in1k", "hub_id": "timm/resnet50.tv_in1k"}
    card = render_card(meta, layout="export-timm", library="timm")
    assert card.data.license == get_pretrained_cfg("resnet50.tv_in1k").license  # bsd-3-clause
    meta["backbone"]["pretrained"] = False  # random init: no base weights, no base licence
    assert render_card(meta, layout="full", library="timm").data.license == "other"


@pytest.mark.parametrize(("case_id", "strategy"), [("hf_bert", "lora"), ("hf_bert", "bitfit"), ("timm_vit", "lora")])
def test_an_export_card_names_its_library_and_renders_whole_tables(tiny_dirs, tmp_path, case_id, strategy):
    exported = export(_artifact(tiny_dirs, tmp_path, case_id, strategy), tmp_path / "export")
    card = ModelCard.load(exported / "README.md")
    _check_tables(card)
    assert card.data.library_name == ("timm" if case_id.startswith("timm") else "transformers")
    assert len(_tables(card, RESULTS)[0].rows) == len(SPLITS)


@pytest.mark.parametrize(
    ("overrides", "ok"),
    [(["hub_license=cc-by-nc-4.0"], True), (["hub_license=Apache 2.0"], False), (["hub_license=mit/x"], False)],
)
def test_hub_license_is_checked_with_the_recipe(overrides, ok, capsys):
    if ok:
        assert load_config(TINY, overrides).hub_license == overrides[0].split("=", 1)[1]
        return
    assert cli(["train", "--recipe", str(TINY), *overrides]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "hub_license" in err and "Traceback" not in err


# ---- the transfer note


def _richer(note: TransferNote) -> TransferNote:
    """The session ladder's note with a scratch control, a cheap baseline and a flag: every row the note's block
    can have."""
    rung = note.rungs[0]
    return note.model_copy(
        update={
            "scratch": rung.model_copy(update={"id": "scratch", "role": "scratch"}),
            "baseline": BaselineModel(
                name="tfidf", description="a cheap baseline", metric=rung.metric, test=None, params={}, seconds=1.0
            ),
            "flags": [FlagModel(kind="drift", rung=rung.id, message="the weights moved", interval=None)],
        }
    )


def _check_note_block(card: ModelCard, note: TransferNote) -> None:
    _check_tables(card)
    comparisons, rungs = _tables(card, NOTE)
    assert len(comparisons.rows) == len(note.comparisons) and comparisons.header == 4
    extra = int(note.scratch is not None) + int(note.baseline is not None)
    assert len(rungs.rows) == len(note.rungs) + extra and rungs.header == 6
    _, _, tokens = _parse(card)
    items = sum(t.type == "list_item_open" for t in tokens)
    assert items == len(note.flags) + len(note.unfreeze_more_evidence)
    images = [c for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "image"]
    assert [i.attrs["src"] for i in images] == ["transfer_note.png"]
    assert "transfer-note" in card.data.tags
    (validation,) = [r for r in card.data.eval_results if r.dataset_split != "test"]
    assert validation.metric_type in ("accuracy", "f1") and validation.metric_name != validation.metric_type


@pytest.mark.slow
def test_every_card_given_a_transfer_note_shows_it(ladder_run):
    artifact = ladder_run.run_dir / "artifact"
    note = TransferNote.model_validate_json((artifact / "transfer_note.json").read_text())
    assert note.comparisons and note.unfreeze_more_evidence
    _check_note_block(ModelCard.load(artifact / "README.md"), note)
    meta = json.loads((artifact / ARTIFACT_FILE).read_text())
    rich = _richer(note)
    for layout in ("adapter", "delta", "full", *EXPORTS):
        library = EXPORTS.get(layout, "peft" if layout == "adapter" else None)
        _check_note_block(render_card(meta, layout=layout, library=library, note=rich), rich)


@pytest.mark.slow
def test_every_kept_rung_and_every_export_carries_the_note(ladder_run, tmp_path):
    """A rung folder shared on its own (`push --rung`, `export`) still says why this depth was chosen."""
    from peft_ladder.hub.export import export
    from peft_ladder.hub.push import rung_artifact

    run = ladder_run.run_dir
    note = TransferNote.model_validate_json((run / "transfer_note.json").read_text())
    kept = [entry.id for entry in note.rungs if entry.artifact]
    assert kept
    for rung in kept:
        folder = rung_artifact(run, rung)
        assert TransferNote.model_validate_json((folder / "transfer_note.json").read_text()) == note
        assert (folder / "transfer_note.png").is_file()
        _check_note_block(ModelCard.load(folder / "README.md"), note)
        exported = export(folder, tmp_path / rung)
        assert (exported / "transfer_note.png").is_file()
        _check_note_block(ModelCard.load(exported / "README.md"), note)


def test_the_packaged_minilm_alias_carries_its_base_licence(tmp_path):
    """`minilm` names a checkpoint inside a pip package: its own card (apache-2.0) is read there."""
    adapted = apply_strategy(load_backbone("minilm", label_names=["a", "b"]), "linear_probe")
    folder = Path(save_adapted(adapted, tmp_path / "probe"))
    assert ModelCard.load(folder / "README.md").data.license == "apache-2.0"
