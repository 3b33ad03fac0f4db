"""Load timm models (registry names, `hf-hub:` ids, `local-dir:` folders) as a `Backbone`."""

from __future__ import annotations

import timm
from timm.data import resolve_model_data_config

from peft_ladder.backbones.backbone import Backbone, BackboneSpec
from peft_ladder.backbones.families import family_of
from peft_ladder.backbones.layout import describe_layout, normalise_patterns


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
    model = timm.create_model(model_name, pretrained=pretrained, num_classes=spec.num_labels, **kwargs)

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
