"""Save and load a rung in a Hugging Face Hub layout; safetensors only, never half-written.

Layouts, by the strategy's `artifact_kind`:
- adapter (lora family): peft's `adapter_config.json` + `adapter_model.safetensors`, head included
  through `modules_to_save`; stock `PeftModel.from_pretrained(base, folder)` loads it.
- delta (linear_probe, bitfit, partial_unfreeze): `delta.safetensors` with only the tensors that
  train or change (trainable parameters, running statistics of updating BatchNorms).
- full (full, scratch): the whole model as its library saves it (`save_pretrained` for transformers,
  timm's `save_for_hf` layout: `config.json` + `model.safetensors`).
Every layout has `peft_ladder.json`: the backbone spec (label names included), the strategy and its
config, the trainable report and whatever the caller adds (resolved config, metrics). A regression head is
saved in the target's own units and unfolded on load (`target_scale.py`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from peft_ladder.artifact_checks import ArtifactDamaged, check_same_base, check_weights, read_meta, weights_manifest
from peft_ladder.backbones.backbone import BackboneSpec
from peft_ladder.backbones.loader import ALIASES, ARTIFACT_FILE, load_backbone_from_spec
from peft_ladder.backbones.text_classifier import EncoderClassifier
from peft_ladder.hub.card import write_card
from peft_ladder.hub.files import write_inference_files
from peft_ladder.hub.portable import (
    LOCAL_FILE,
    RUNG_FOLDER,
    base_reference,
    local_base_reference,
    portable,
    scrub_json_files,
)
from peft_ladder.hub.standalone import save_standalone, write_rung_config
from peft_ladder.hub.stock import stock_loading
from peft_ladder.io import disk_full_is_a_user_error, swap_into_place, write_text_atomic
from peft_ladder.logs import library_quiet
from peft_ladder.strategies import AdaptedModel, apply_strategy, finish_adaptation, get_strategy, make_strategy_config
from peft_ladder.target_scale import FOLDED_KEY, foldable_head, saved_in_target_units, unfold
from peft_ladder.tasks import Task

FORMAT_VERSION = 2
DELTA_FILE = "delta.safetensors"
HEAD_FILE = "head.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def save_adapted(
    adapted: AdaptedModel, path: str | os.PathLike, *, overwrite: bool = False, extra: dict | None = None
) -> str:
    """Write `adapted` to `path` atomically (temporary folder, then rename).

    Args:
        adapted: the rung to save.
        path: destination folder.
        overwrite: replace an existing folder (the old one is removed only after the new one is in place).
        extra: JSON-serialisable additions to `peft_ladder.json` (resolved config, metrics).

    Returns:
        The folder written, as a string.
    """
    dest = Path(path)
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists; pass overwrite=True or choose another output folder.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        with disk_full_is_a_user_error(dest.parent, "the artifact"):
            _write_artifact(adapted, tmp, extra)
        swap_into_place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(dest)


def _write_artifact(adapted: AdaptedModel, tmp: Path, extra: dict | None) -> None:
    """Every file of the artifact into the (new, empty) folder `tmp`."""
    kind = adapted.strategy_cls.artifact_kind
    backbone = adapted.backbone
    spec = backbone.spec
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "source": backbone.source,
        "modality": backbone.modality,
        "family": backbone.family.name,
        "family_pooling": backbone.family.pooling,
        "strategy": adapted.strategy,
        "strategy_config": adapted.config.model_dump(mode="json"),
        "backbone": {**spec.to_dict(), "tokenizer": None},  # the tokenizer files are in the folder
        "label2id": {name: i for i, name in enumerate(spec.label_names)},
        "data_config": _jsonable(backbone.data_config),
        "report": adapted.report.to_dict(),
        **(extra or {}),
    }
    stock = stock_loading(meta)
    meta["stock_loading"] = stock.to_dict()
    task = Task.from_dict(meta.get("task"))
    config = getattr(backbone.model, "config", None)
    if task.problem_type and hasattr(config, "problem_type"):  # stock transformers then read the task (pipeline, loss)
        config.problem_type = task.problem_type
    with _default_layout(adapted.model), library_quiet(), saved_in_target_units(backbone, task) as folded:
        if folded:  # a regression head as stock tools read it: see target_scale.py
            meta[FOLDED_KEY] = True
        if kind == "adapter":
            peft_config = adapted.model.peft_config["default"]
            # The base as a stock loader finds it on this machine; push and export write portable names.
            peft_config.base_model_name_or_path = local_base_reference(spec.name, spec.hub_id)
            # An adapter over an encoder no stock class pools like saves no task type: peft then records our
            # model class, which its AutoPeftModel classes refuse to import, instead of building a
            # BertForSequenceClassification that would predict wrong.
            with _task_type(peft_config, peft_config.task_type if stock.same_logits else None):
                # No embedding-layer lookup: peft would otherwise ask the Hub whether the vocabulary changed.
                adapted.model.save_pretrained(str(tmp), save_embedding_layers=False)
        elif kind == "delta":
            save_file(adapted.trainable_state(), str(tmp / DELTA_FILE), metadata={"format": "pt"})
        else:  # a whole model, in the layout its library's stock class loads
            save_standalone(backbone.model, backbone, tmp)
            if isinstance(backbone.model, EncoderClassifier):  # the head on its own: `load_adapted` reads it
                save_file(_contiguous(backbone.head_state_dict()), str(tmp / HEAD_FILE), metadata={"format": "pt"})
    write_inference_files(backbone, tmp, with_config=kind != "full" and stock.same_logits)
    if kind != "full" and not stock.same_logits:
        write_rung_config(
            backbone, tmp, kind=kind, strategy=adapted.strategy, base=base_reference(spec.name, spec.hub_id)
        )
    meta["weights"] = weights_manifest(tmp)  # what load_adapted checks before it trusts the files
    write_text_atomic(tmp / ARTIFACT_FILE, json.dumps(portable(meta), indent=2, default=str))
    local = {"name": spec.name, "checkpoint": spec.checkpoint}
    if portable(local) != local:  # what load_adapted needs on this machine, kept out of shared files
        write_text_atomic(tmp / LOCAL_FILE, json.dumps(local, indent=2))
    scrub_json_files(tmp, keep_base_path=True)
    write_card(tmp, meta)


@contextmanager
def _task_type(peft_config: Any, task_type: str | None):
    """Within the block, `peft_config` has `task_type` (saving writes it); restored after."""
    saved = peft_config.task_type
    peft_config.task_type = task_type
    try:
        yield
    finally:
        peft_config.task_type = saved


@contextmanager
def _default_layout(model: torch.nn.Module):
    """Within the block, a channels_last model holds its weights in the default layout: safetensors only
    stores contiguous tensors, and an artifact should not depend on how it was trained. Restored after."""
    nhwc = any(
        p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
        for p in model.parameters()
    )
    if nhwc:
        model.to(memory_format=torch.contiguous_format)
    try:
        yield
    finally:
        if nhwc:
            model.to(memory_format=torch.channels_last)


def load_adapted(
    path: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | None = None,
    trust_remote_code: bool = False,
    base: str | None = None,
) -> AdaptedModel:
    """Restore any rung saved by `save_adapted`, from a folder or a Hub repo, with the same trainable set.

    Args:
        path: an artifact folder, or a Hub repo id (`user/name`) it was pushed to.
        revision: Hub branch, tag or commit (repo ids only).
        token: for private repos; used for the download only, never stored.
        trust_remote_code: allow custom modelling code of the base (off unless asked).
        base: where the base checkpoint is, when it was a local folder on another machine (the artifact
            names it by its folder name only).

    The base backbone is rebuilt from the stored spec; only safetensors files are read.
    """
    folder = Path(path)
    if not folder.is_dir():
        folder = download_artifact(str(path), revision=revision, token=token)
    meta_file = folder / ARTIFACT_FILE
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a peft_ladder artifact: {ARTIFACT_FILE} is missing.")
    meta = read_meta(meta_file)
    check_weights(folder, meta.get("weights"), meta_file)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{meta_file}: format_version {meta.get('format_version')} is not {FORMAT_VERSION}.")
    spec = BackboneSpec(**meta["backbone"])
    if base is not None:
        spec = replace(spec, name=base)
    elif (folder / LOCAL_FILE).is_file():  # written on this machine: the base's real path
        spec = replace(spec, **json.loads((folder / LOCAL_FILE).read_text()))
    elif not _base_is_here(spec):
        if not spec.hub_id:
            raise FileNotFoundError(
                f"{folder} was trained from a local folder named {base_reference(spec.name, None)!r}, which is not here: pass "
                "base=<that folder> to load_adapted."
            )
        spec = replace(spec, name=f"hf:{spec.hub_id}" if meta["source"] == "hf" else f"timm:hf-hub:{spec.hub_id}")
    if (folder / "tokenizer_config.json").is_file():
        spec = replace(spec, tokenizer=str(folder))
    strategy = meta["strategy"]
    config = make_strategy_config(strategy, meta["strategy_config"], where=f"{meta_file}:strategy_config")
    hub = dict(token=token, trust_remote_code=trust_remote_code)
    with warnings.catch_warnings(record=True) as caught:  # peft's own note on missing keys: checked below
        warnings.simplefilter("always")
        adapted = _rebuild(folder, meta, spec, config, hub)
    check_same_base(meta["report"], adapted.report.to_dict(), meta_file, spec.name)
    for warning in caught:
        if "missing adapter keys" in str(warning.message):  # the base is the right one: the file lacks tensors
            raise ArtifactDamaged(
                f"{folder / ADAPTER_WEIGHTS} lacks tensors its adapter_config.json declares ({str(warning.message)[:300]}): "
                "save or download the artifact again."
            )
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    if meta.get(FOLDED_KEY):  # saved in the target's units; the model works on the standardised target
        head = foldable_head(adapted.backbone)
        if head is None:
            raise ValueError(
                f"{meta_file} says its head outputs the target's units, but the head is not one linear layer."
            )
        unfold(head, Task.from_dict(meta.get("task")))
    return adapted


def _rebuild(folder: Path, meta: dict[str, Any], spec: BackboneSpec, config: Any, hub: dict) -> AdaptedModel:
    """The rung in `folder`, rebuilt on `spec`'s base by its kind's layout."""
    kind, strategy = meta["kind"], meta["strategy"]
    if kind == "adapter":
        from peft import PeftConfig, PeftModel

        if not (folder / ADAPTER_WEIGHTS).is_file():
            raise FileNotFoundError(f"{folder}: {ADAPTER_WEIGHTS} is missing (pickled adapters are not loaded).")
        _load_weights(folder / ADAPTER_WEIGHTS)  # a damaged file is named here, not deep in peft (no manifest: older)
        backbone = load_backbone_from_spec(spec, **hub)
        peft_config = PeftConfig.from_pretrained(str(folder))
        if peft_config.task_type is None and backbone.modality == "text":
            # Saved without one so that stock peft refuses it (see save_adapted); it trained as SEQ_CLS.
            peft_config.task_type, peft_config.auto_mapping = "SEQ_CLS", None
        with library_quiet():
            model = PeftModel.from_pretrained(backbone.model, str(folder), is_trainable=True, config=peft_config)
        return finish_adaptation(model, backbone, strategy, config)
    if kind == "delta":
        adapted = apply_strategy(load_backbone_from_spec(spec, **hub), strategy, config)
        tensors = _load_weights(folder / DELTA_FILE)
        state = adapted.model.state_dict()
        unknown = sorted(set(tensors) - set(state))
        if unknown:
            raise ValueError(f"{folder / DELTA_FILE} has tensors the rebuilt model lacks: {unknown[:5]}.")
        adapted.model.load_state_dict(tensors, strict=False)
        return adapted
    # full: the folder itself is the backbone; skip `init_backbone` (scratch would re-initialise).
    # The folder's own classifier is the trained head: keep it (a same-size head is otherwise replaced).
    local = replace(
        spec,
        name=f"{meta['source']}:{folder.resolve()}",
        pretrained=True,
        checkpoint=None,
        model_kwargs={},
        keep_head=True,
    )
    backbone = load_backbone_from_spec(local, **hub)
    if (folder / HEAD_FILE).is_file():
        backbone.load_head_state(_load_weights(folder / HEAD_FILE))
    model = get_strategy(strategy)().configure(backbone, config)
    return finish_adaptation(model, backbone, strategy, config)


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file; a damaged one (from before weights manifests) is an error naming it."""
    from safetensors import SafetensorError

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ArtifactDamaged(
            f"{path} cannot be read as safetensors ({err}): save or download the artifact again."
        ) from None


def _base_is_here(spec: BackboneSpec) -> bool:
    """The recorded base name loads on this machine as it is: an installed alias, an existing folder, a timm
    registry name, or a Hub id (`org/name`). A bare folder name (a local base, named portably) does not."""
    if spec.name in ALIASES:
        try:
            ALIASES[spec.name].load()
        except ValueError:
            return False
        return True
    source, target = spec.name.partition(":")[::2] if spec.name.startswith(("hf:", "timm:")) else ("", spec.name)
    target = target.removeprefix("local-dir:")
    if Path(target).exists():
        return True
    if source == "timm":
        import timm

        return target.startswith("hf-hub:") or timm.is_model(target)
    return source == "hf" and "/" in target and not target.startswith(("/", "."))


def download_artifact(repo_id: str, *, revision: str | None = None, token: str | None = None) -> Path:
    """A pushed artifact from the Hub (or the local Hugging Face cache when offline): safetensors and text files
    only, never a pickle. A default push keeps the rung's own files in `rung/` beside its standalone export:
    only those are fetched."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    from huggingface_hub.utils import HFValidationError

    patterns = ["*.json", "*.safetensors", "*.txt", "*.md", "*.model", "*.py", "*.png"]
    try:
        folder = ""
        for candidate in ("", f"{RUNG_FOLDER}/"):
            try:
                hf_hub_download(repo_id, f"{candidate}{ARTIFACT_FILE}", revision=revision, token=token)
            except (EntryNotFoundError, LocalEntryNotFoundError):
                continue
            folder = candidate
            break
        root = snapshot_download(repo_id, revision=revision, token=token, allow_patterns=[folder + p for p in patterns])
    except HFValidationError:
        raise FileNotFoundError(f"{repo_id} is neither an artifact folder nor a Hub repo id (user/name).") from None
    return Path(root) / folder


def _contiguous(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in tensors.items()}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))
