"""Inputs that fit the checkpoint: recipe overrides, a checkpoint folder's own config, a warning on large
resizes, random init that is random, and a fresh head unless asked to keep one."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import IMAGE_SIZE, NUM_LABELS, make_color_images

from peft_ladder import load_backbone
from peft_ladder.build import build_splits
from peft_ladder.config import load_config
from peft_ladder.data import encode_splits


def test_a_recipe_sets_input_size_mean_std_and_crop_for_timm_and_transformers(tiny_dirs):
    overrides = dict(input_size=(3, 48, 48), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=1.0)
    for case in ("timm_resnet", "hf_vit"):
        backbone = load_backbone(str(tiny_dirs[case]), num_labels=NUM_LABELS, data_config=overrides)
        cfg = backbone.data_config
        assert tuple(cfg["input_size"]) == (3, 48, 48) and tuple(cfg["mean"]) == (0.5, 0.5, 0.5)
        assert cfg["crop_pct"] == 1.0 and cfg["source"] == "recipe"


def test_an_int_side_in_a_recipe_becomes_an_input_size(tmp_path):
    images = make_color_images(tmp_path / "images")
    config = load_config(
        None,
        [],
        backbone={"name": "timm:resnet18", "pretrained": False, "data_config": {"input_size": IMAGE_SIZE}},
        strategy={"name": "linear_probe"},
        data={"dataset": str(images / "train").rsplit("/train", 1)[0]},
    )
    assert config.backbone.data_config.overrides()["input_size"] == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_data_config_on_a_text_backbone_is_refused(tiny_dirs):
    with pytest.raises(ValueError, match="image backbones"):
        load_backbone(str(tiny_dirs["hf_bert"]), num_labels=NUM_LABELS, data_config={"input_size": (3, 8, 8)})


def test_a_timm_checkpoint_file_takes_its_folders_data_config(tiny_dirs):
    """timm_vit was saved for 32 x 32 inputs with save_for_hf; the bare architecture's default is 224."""
    weights = tiny_dirs["timm_vit"] / "model.safetensors"
    backbone = load_backbone(
        "timm:vit_tiny_patch16_224",
        num_labels=NUM_LABELS,
        checkpoint=str(weights),
        model_kwargs=dict(img_size=IMAGE_SIZE, depth=2),
    )
    assert tuple(backbone.data_config["input_size"]) == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_a_model_kwarg_the_architecture_does_not_take_names_the_fix():
    with pytest.raises(ValueError, match="data_config"):
        load_backbone("timm:resnet18", num_labels=NUM_LABELS, pretrained=False, model_kwargs={"img_size": 32})


def test_images_resized_more_than_twice_their_size_warn(tmp_path, caplog):
    images = make_color_images(tmp_path / "images", size=16)
    config = load_config(
        None,
        [],
        backbone={"name": "timm:resnet18", "pretrained": False},
        strategy={"name": "linear_probe"},
        data={"dataset": str(images / "train")},
    )
    splits = build_splits(config)
    backbone = load_backbone("timm:resnet18", label_names=splits.label_names, pretrained=False)
    with caplog.at_level(logging.WARNING, logger="peft_ladder.data.pipeline"):
        encode_splits(splits, backbone, config.data)
    assert any("16x16" in r.message and "224x224" in r.message for r in caplog.records)


@pytest.mark.parametrize("case", ["timm_resnet", "hf_vit"])
def test_a_checkpoint_classifier_of_the_tasks_size_is_replaced_unless_kept(tiny_dirs, tmp_path, case):
    """A task with as many classes as the checkpoint's classifier must still get a new head."""
    folder = tmp_path / case
    shutil.copytree(tiny_dirs[case], folder)
    saved = load_file(str(folder / "model.safetensors"))
    probe = load_backbone(str(folder), num_labels=NUM_LABELS)
    head = next(n for n in probe.model.state_dict() if probe.layout.role_of(n)[0] == "head" and n.endswith("weight"))
    stored = saved[head]
    fresh = load_backbone(str(folder), num_labels=stored.shape[0])
    kept = load_backbone(str(folder), num_labels=stored.shape[0], keep_head=True)
    assert torch.equal(kept.model.state_dict()[head], stored)
    assert not torch.equal(fresh.model.state_dict()[head], stored)
