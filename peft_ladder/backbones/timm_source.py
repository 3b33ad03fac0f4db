"""Load timm models (registry names, `hf-hub:` ids, `local-dir:` folders) as a `Backbone`."""

from __future__ import annotations

import json
from pathlib import Path

import timm
from timm.data import resolve_model_data_config

from peft_ladder.backbones.backbone import Backbone, BackboneSpec
from peft_ladder.backbones.families import family_of
from peft_ladder.backbones.layout import describe_layout, normalise_patterns
from peft_ladder.errors import hub_reason


def load_timm(model_name: str, spec: BackboneSpec) -> Backbone:
    """Create a timm model with a fresh head of `spec.num_labels` outputs.

    Args:
        model_name: what `timm.create_model` takes: `resnet50`, `hf-hub:timm/...`, `local-dir:/path`.
        spec: the rest of the request (pretrained, checkpoint, kwargs, overrides).
    """
    kwargs = dict(spec.model_kwargs)
    pretrained = spec.pretrained
    if spec.checkpoint and spec.pretrained:
        # timm's own loader adapts the head / input channels of a local weights file. Without `pretrained`
        # the file is not read: random init means random init (the ladder's transferability floor).
        kwargs["pretrained_cfg_overlay"] = {**kwargs.get("pretrained_cfg_overlay", {}), "file": spec.checkpoint}
    if spec.revision and model_name.startswith("hf-hub:") and "@" not in model_name:
        model_name = f"{model_name}@{spec.revision}"
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=spec.num_labels, **kwargs)
    except TypeError as err:  # a constructor argument this architecture does not take (img_size on a ResNet)
        raise ValueError(
            f"backbone.model_kwargs {sorted(spec.model_kwargs)} do not fit timm {model_name}: {err}. Image size and "
            "normalisation go in backbone.data_config (input_size, mean, std), not in model_kwargs."
        ) from None
    except RuntimeError as err:
        if not str(err).startswith("Unknown model"):
            raise
        raise ValueError(
            f"backbone.name={spec.name!r}: timm has no model {model_name!r}; timm.list_models('<pattern>') lists "
            "the names (a pretrained tag goes after a dot: resnet50.a1_in1k), and a local folder must exist."
        ) from None
    except OSError as err:  # the pretrained weights (or an hf-hub: / local-dir: config) cannot be fetched
        raise FileNotFoundError(
            f"backbone.name={spec.name!r}: timm cannot load {model_name}: {hub_reason(err) or err}; or set "
            "backbone.pretrained: false (random init) or backbone.checkpoint to a local .safetensors file."
        ) from err
    source_classes = model.pretrained_cfg.get("num_classes")
    if pretrained and not spec.keep_head and source_classes == spec.num_labels:
        # timm loaded the checkpoint's classifier because it has the task's size; the ladder expects a new one.
        model.reset_classifier(spec.num_labels)

    if spec.head:
        head = list(spec.head)
    else:
        classifier = model.get_classifier()
        head = [n for n, m in model.named_modules() if m is classifier and n]
        if not head:
            raise ValueError(f"timm model {model_name} has no classifier module; pass `head=` with its name.")
    patterns = (
        normalise_patterns(spec.block_pattern)
        if spec.block_pattern
        else normalise_patterns(model.group_matcher()["blocks"])
    )
    layout = describe_layout(model, head, patterns)
    data_config = dict(resolve_model_data_config(model))
    if spec.checkpoint:
        # A loose weights file says nothing of its inputs; a timm folder beside it (save_for_hf) does.
        data_config.update(_folder_data_config(Path(spec.checkpoint).parent))
    if "img_size" in spec.model_kwargs:
        # timm keeps the pretrained cfg's input size even when the model was built for another one.
        size = spec.model_kwargs["img_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        data_config["input_size"] = (spec.model_kwargs.get("in_chans", 3), *size)
    return Backbone(
        model=model,
        source="timm",
        modality="image",
        layout=layout,
        family=family_of("timm", model),
        data_config=data_config,
        spec=spec,
    )


_DATA_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def _folder_data_config(folder: Path) -> dict:
    """The data keys of `pretrained_cfg` in a timm `config.json` (`save_for_hf` layout), if the folder has one."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        return {}
    cfg = json.loads(config_file.read_text()).get("pretrained_cfg") or {}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if k in _DATA_KEYS}
