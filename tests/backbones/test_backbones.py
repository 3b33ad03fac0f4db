"""`load_backbone`: layout, default LoRA targets, data config, checkpoints and refusals."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file
from tiny_models import IMAGE_SIZE, NUM_LABELS, TINY_BACKBONES

from peft_ladder import apply_strategy, load_backbone, save_adapted

CASE_IDS = [c.id for c in TINY_BACKBONES]
CASE = {c.id: c for c in TINY_BACKBONES}


def load(tiny_dirs, case_id: str, **kwargs):
    return load_backbone(str(tiny_dirs[case_id]), num_labels=NUM_LABELS, **kwargs)


# --- layout -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_every_parameter_has_exactly_one_place(tiny_dirs, case_id):
    backbone = load(tiny_dirs, case_id)
    lay = backbone.layout
    names = [n for n, _ in backbone.model.named_parameters()]
    places = Counter(lay.all_params())
    assert set(places) == set(names)
    assert all(count == 1 for count in places.values())
    head = set(lay.head_params())
    assert head
    for name in names:
        role, _ = lay.role_of(name)
        in_part = {
            "stem": name in lay.stem,
            "block": any(name in b.params for b in lay.blocks),
            "neck": name in lay.neck,
            "head": name in head,
        }
        assert [part for part, hit in in_part.items() if hit] == [role], name


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_blocks_are_non_empty_and_in_forward_order(tiny_dirs, case_id):
    backbone = load(tiny_dirs, case_id)
    lay = backbone.layout
    position = {n: i for i, (n, _) in enumerate(backbone.model.named_parameters())}
    assert lay.num_blocks >= 2
    assert all(b.params for b in lay.blocks)
    keys = [b.key for b in lay.blocks]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert len({b.name for b in lay.blocks}) == lay.num_blocks
    spans = [(min(position[p] for p in b.params), max(position[p] for p in b.params)) for b in lay.blocks]
    assert all(prev[1] < nxt[0] for prev, nxt in zip(spans, spans[1:])), "blocks overlap or are out of order"
    assert all(position[p] < spans[0][0] for p in lay.stem)
    assert all(position[p] > spans[-1][1] for p in lay.neck)
    for i, block in enumerate(lay.blocks):
        assert all(lay.block_of(p) == i for p in block.params)


def test_negative_block_index_and_out_of_range(tiny_dirs):
    lay = load(tiny_dirs, "timm_vit").layout
    assert lay.block_index(-1) == lay.num_blocks - 1
    with pytest.raises(IndexError):
        lay.block_index(lay.num_blocks)


@pytest.mark.parametrize("case_id", ["timm_vit", "timm_resnet"])
def test_timm_blocks_match_timms_own_grouping(tiny_dirs, case_id):
    backbone = load(tiny_dirs, case_id)
    _assert_blocks_match_timm(backbone)


def test_timm_fixed_ordinal_groups_join_their_stage():
    """ConvNeXt puts each stage's downsample in that stage's first block (`(regex, (0,))` is a suffix)."""
    backbone = load_backbone(
        "timm:convnext_atto",
        pretrained=False,
        num_labels=NUM_LABELS,
        model_kwargs=dict(depths=(1, 2, 1, 1), dims=(8, 16, 24, 32)),
    )
    lay = backbone.layout
    assert lay.num_blocks == 5
    for stage in (1, 2, 3):
        downsample = f"stages.{stage}.downsample.1.weight"
        assert lay.block_of(downsample) == lay.block_of(f"stages.{stage}.blocks.0.conv_dw.weight")
    _assert_blocks_match_timm(backbone)


def _assert_blocks_match_timm(backbone) -> None:
    model = backbone.model
    grouped = timm.models.group_parameters(model, model.group_matcher())
    block_params = {p for b in backbone.layout.blocks for p in b.params}
    # timm merges "after the blocks" groups (ordinal 99999, e.g. ViT's final norm) into the last block;
    # peft_ladder keeps them apart as the neck, so compare the block parameters only.
    timm_blocks = [set(names) & block_params for _, names in sorted(grouped.items()) if set(names) & block_params]
    assert [set(b.params) for b in backbone.layout.blocks] == timm_blocks


# --- default LoRA targets -----------------------------------------------------------------------


def _in_block_modules(backbone, kind: type[nn.Module]) -> list[str]:
    lay = backbone.layout
    return [
        n for n, m in backbone.model.named_modules() if isinstance(m, kind) and lay.block_of(n + ".weight") is not None
    ]


@pytest.mark.parametrize(
    ("case_id", "expected"),
    [
        ("timm_vit", [["qkv"]]),
        ("hf_bert", [["query", "value"]]),
        # transformers < 5 names ViT's projections query/value, transformers 5 q_proj/v_proj.
        ("hf_vit", [["query", "value"], ["q_proj", "v_proj"]]),
    ],
)
def test_default_targets_are_attention_projections(tiny_dirs, case_id, expected):
    backbone = load(tiny_dirs, case_id)
    targets = backbone.default_targets()
    assert targets in expected
    linears = _in_block_modules(backbone, nn.Linear)
    for target in targets:
        hits = [n for n in linears if n.rsplit(".", 1)[-1] == target]
        assert len(hits) == backbone.layout.num_blocks, target  # one per block


@pytest.mark.parametrize("case_id", ["timm_resnet", "hf_resnet"])
def test_default_targets_of_resnets_are_the_convolutions_in_blocks(tiny_dirs, case_id):
    backbone = load(tiny_dirs, case_id)
    convs = _in_block_modules(backbone, nn.Conv2d)
    assert convs and backbone.default_targets() == convs
    modules = dict(backbone.model.named_modules())
    all_convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    assert len(all_convs) > len(convs)  # the stem's convolution stays out
    for name in backbone.default_targets():
        assert isinstance(modules[name], nn.Conv2d)
        assert backbone.layout.role_of(name + ".weight")[0] == "block"


# --- data config --------------------------------------------------------------------------------


@pytest.mark.parametrize("case_id", [c.id for c in TINY_BACKBONES if c.modality == "image"])
def test_image_data_config(tiny_dirs, case_id):
    backbone = load(tiny_dirs, case_id)
    cfg = backbone.data_config
    assert backbone.modality == "image"
    assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3 and all(s > 0 for s in cfg["std"])
    assert len(cfg["input_size"]) == 3 and cfg["input_size"][0] == 3
    if case_id in ("timm_vit", "hf_vit"):  # both were built for 32 x 32 inputs
        assert tuple(cfg["input_size"]) == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_timm_img_size_kwarg_sets_input_size():
    backbone = load_backbone(
        "timm:vit_tiny_patch16_224",
        pretrained=False,
        num_labels=NUM_LABELS,
        model_kwargs=dict(img_size=IMAGE_SIZE, depth=1),
    )
    assert tuple(backbone.data_config["input_size"]) == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert backbone.model(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)).shape == (1, NUM_LABELS)


def test_text_data_config_names_the_tokenizer(tiny_dirs):
    backbone = load(tiny_dirs, "hf_bert")
    assert backbone.modality == "text"
    assert Path(backbone.data_config["tokenizer"]).resolve() == tiny_dirs["hf_bert"].resolve()
    assert "mean" not in backbone.data_config
    own = load(tiny_dirs, "hf_bert", tokenizer="some/other-tokenizer")
    assert own.data_config["tokenizer"] == "some/other-tokenizer"


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_fresh_head_has_num_labels_outputs(tiny_dirs, case_id):
    case = CASE[case_id]
    backbone = load_backbone(str(tiny_dirs[case_id]), label_names=["cat", "dog", "bird", "fish"])
    assert backbone.num_labels == 4 and backbone.spec.label_names == ["cat", "dog", "bird", "fish"]
    backbone.model.eval()
    with torch.no_grad():
        assert backbone.logits(backbone.model, case.batch(n=2)).shape == (2, 4)


# --- refusals -----------------------------------------------------------------------------------


def test_head_that_does_not_exist(tiny_dirs):
    with pytest.raises(ValueError, match="classifier"):
        load(tiny_dirs, "timm_vit", head="classifier")


def test_explicit_head_is_used(tiny_dirs):
    backbone = load(tiny_dirs, "timm_vit", head="head")
    assert backbone.layout.head_modules == ["head"]


def test_unknown_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="foo"):
        load_backbone("foo", num_labels=NUM_LABELS)


def test_weights_file_as_name_points_at_checkpoint(tiny_dirs):
    weights = tiny_dirs["timm_resnet"] / "model.safetensors"
    with pytest.raises(ValueError, match="checkpoint"):
        load_backbone(str(weights), num_labels=NUM_LABELS)


@pytest.mark.parametrize("case_id", ["hf_bert", "timm_vit"])
def test_folder_with_only_pickled_weights_is_refused(tiny_dirs, tmp_path, case_id):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(tiny_dirs[case_id] / "config.json", folder / "config.json")
    (folder / "pytorch_model.bin").touch()  # never read: the refusal comes first
    with pytest.raises(ValueError, match="allow_pickle"):
        load_backbone(str(folder), num_labels=NUM_LABELS)


def test_folder_without_weights_is_refused_unless_random_init(tiny_dirs, tmp_path):
    folder = tmp_path / "config_only"
    folder.mkdir()
    shutil.copy(tiny_dirs["hf_bert"] / "config.json", folder / "config.json")
    with pytest.raises(FileNotFoundError):
        load_backbone(str(folder), num_labels=NUM_LABELS)
    assert load_backbone(str(folder), num_labels=NUM_LABELS, pretrained=False).layout.num_blocks == 2


def test_pickled_checkpoint_is_refused(tmp_path):
    checkpoint = tmp_path / "x.pt"
    checkpoint.touch()
    with pytest.raises(ValueError, match="x.pt"):
        load_backbone("timm:resnet18", num_labels=NUM_LABELS, checkpoint=str(checkpoint))


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_backbone("timm:resnet18", num_labels=NUM_LABELS, checkpoint=str(tmp_path / "missing.safetensors"))


@pytest.mark.parametrize(("num_labels", "label_names"), [(3, ["a", "b"]), (None, ["a", "a"]), (None, None), (0, None)])
def test_bad_labels(tiny_dirs, num_labels, label_names):
    with pytest.raises(ValueError):
        load_backbone(str(tiny_dirs["hf_bert"]), num_labels=num_labels, label_names=label_names)


def test_artifact_folder_points_at_load_adapted(tiny_dirs, tmp_path):
    adapted = apply_strategy(load(tiny_dirs, "hf_bert"), "linear_probe")
    folder = save_adapted(adapted, tmp_path / "artifact")
    with pytest.raises(ValueError, match="load_adapted"):
        load_backbone(folder, num_labels=NUM_LABELS)


def test_config_of_neither_library_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="config.json"):
        load_backbone(str(tmp_path), num_labels=NUM_LABELS)


# --- checkpoints --------------------------------------------------------------------------------


def test_timm_architecture_with_local_checkpoint(tiny_dirs):
    weights = tiny_dirs["timm_resnet"] / "model.safetensors"
    backbone = load_backbone("timm:resnet18", num_labels=NUM_LABELS, checkpoint=str(weights))
    assert Path(backbone.spec.checkpoint) == weights.resolve()
    saved = load_file(str(weights))
    state = backbone.model.state_dict()
    body = [n for n in state if backbone.layout.role_of(n)[0] != "head"]
    block_params = [p for b in backbone.layout.blocks for p in b.params]
    assert block_params and set(block_params) <= set(body)
    for name in body:  # blocks, stem and BatchNorm statistics all come from the file
        torch.testing.assert_close(state[name], saved[name], rtol=0, atol=0)
    assert backbone.model.get_classifier().out_features == NUM_LABELS  # the 10-way head was replaced
    assert saved["fc.weight"].shape[0] == 10

    fresh = load_backbone("timm:resnet18", num_labels=NUM_LABELS, pretrained=False)
    assert not torch.equal(fresh.model.state_dict()[block_params[0]], saved[block_params[0]])
    # pretrained=False with a checkpoint is still random init: the file is not loaded.
    floor = load_backbone("timm:resnet18", num_labels=NUM_LABELS, checkpoint=str(weights), pretrained=False)
    assert not torch.equal(floor.model.state_dict()[block_params[0]], saved[block_params[0]])


def test_checkpoint_is_refused_for_transformers_backbones(tiny_dirs):
    """A loose weights file is a timm feature; a transformers backbone must not silently ignore it."""
    weights = tiny_dirs["hf_bert"] / "model.safetensors"
    with pytest.raises(ValueError, match="checkpoint"):
        load_backbone(str(tiny_dirs["hf_bert"]), num_labels=NUM_LABELS, checkpoint=str(weights))
