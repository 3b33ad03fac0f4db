"""Only safetensors weights are read unless `backbone.allow_pickle` says otherwise, through every door timm
offers (`backbone.checkpoint`, `model_kwargs.checkpoint_path`, `model_kwargs.pretrained_cfg_overlay.file`) and
through an artifact's edited `peft_ladder.json`: a weights pickle that would create a file never runs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from peft_ladder import apply_strategy, load_adapted, load_backbone, save_adapted


class _Touch:
    """Unpickling this creates a file: the proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    proof = tmp_path / "PWNED"
    weights = tmp_path / "weights.pth"
    weights.write_bytes(pickle.dumps(_Touch(str(proof))))
    return weights, proof


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"checkpoint": "{w}"}, "backbone.checkpoint"),
        ({"model_kwargs": {"checkpoint_path": "{w}"}}, "backbone.model_kwargs.checkpoint_path"),
        ({"model_kwargs": {"pretrained_cfg_overlay": {"file": "{w}"}}}, "backbone.model_kwargs.pretrained_cfg_overlay"),
    ],
)
def test_every_timm_weights_door_refuses_a_pickle(tmp_path, kwargs, key):
    weights, proof = _crafted(tmp_path)
    kwargs = json.loads(json.dumps(kwargs).replace("{w}", str(weights)))
    with pytest.raises(ValueError, match=key.replace(".", r"\.")) as err:
        load_backbone("timm:resnet18", num_labels=3, **kwargs)
    assert "allow_pickle" in str(err.value)
    assert not proof.exists()


def test_an_edited_artifact_cannot_point_its_base_at_a_pickle(tmp_path, tiny_dirs):
    adapted = apply_strategy(load_backbone(str(tiny_dirs["timm_resnet"]), num_labels=3), "linear_probe")
    folder = Path(save_adapted(adapted, tmp_path / "artifact"))
    weights, proof = _crafted(tmp_path)
    meta_file = folder / "peft_ladder.json"
    meta = json.loads(meta_file.read_text())
    meta["backbone"]["model_kwargs"] = {"pretrained_cfg_overlay": {"file": str(weights)}}
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_adapted(folder)
    assert not proof.exists()
