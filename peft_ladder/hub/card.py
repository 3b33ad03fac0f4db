"""Model cards (`README.md`) for rung folders, the ladder's published artifact and exports, made with
huggingface_hub's `ModelCard` / `ModelCardData`: Hub metadata (library, base model, licence, pipeline tag, tags,
datasets, `model-index` metrics with their intervals), the transfer note's substance when there is one, and a
usage snippet for every way the folder loads."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from peft_ladder.config import LICENSE_ID
from peft_ladder.hub.portable import LOCAL_FILE, portable
from peft_ladder.hub.stock import is_stock_text, stock_loading
from peft_ladder.io import write_text_atomic

TEMPLATE = Path(__file__).with_name("model_card.md.j2")
REPO_PLACEHOLDER = "REPO"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# peft_ladder's metric names -> (Hub metric id from hf.co/metrics, readable name, the args `compute` took).
# Any other name is an `evaluate` id already and goes up as it is.
HUB_METRICS: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "accuracy": ("accuracy", "Accuracy", None),
    "f1_macro": ("f1", "F1 (macro)", {"average": "macro"}),
    "f1_micro": ("f1", "F1 (micro)", {"average": "micro"}),
    "subset_accuracy": ("accuracy", "Subset accuracy", None),
    "map": ("average_precision", "mAP (macro average precision)", {"average": "macro"}),
    "rmse": ("rmse", "RMSE", None),
    "mae": ("mae", "MAE", None),
    "r2": ("r_squared", "R2", None),
    "spearman": ("spearmanr", "Spearman", None),
    # Entity-level, micro-averaged over entities as seqeval computes them (evaluate's `seqeval` metric).
    "entity_f1": ("seqeval", "Entity F1", None),
    "entity_precision": ("seqeval", "Entity precision", None),
    "entity_recall": ("seqeval", "Entity recall", None),
    "token_accuracy": ("accuracy", "Word accuracy", None),
}


@dataclass(frozen=True)
class Licence:
    """A card's `license`, and for `other` what the base's card names instead (`license_name`, `license_link`)."""

    id: str
    name: str | None = None
    link: str | None = None


def pipeline_tag(modality: str, task: str | None = None) -> str:
    if task == "token_classification":
        return "token-classification"
    return "text-classification" if modality == "text" else "image-classification"


def library_name(layout: str, meta: dict[str, Any]) -> str | None:
    """The Hub's `library_name` for a folder: the library that loads it as it stands, or None where none does.

    The Hub turns it into a "Use this model" snippet, so it names a library only where that snippet loads this
    model. Adapter folders are peft's layout; full rungs and exports are whole models in their library's own
    layout (`hub/standalone.py`). A delta folder holds only the tensors training changed (`delta.safetensors`,
    which only peft_ladder reads) beside a config: a transformers or timm snippet would at best refuse and at
    worst build the base with a fresh head, so it stays unset rather than point at a loader that does not work.
    """
    if layout == "adapter":
        return "peft"
    if layout == "delta":
        return None
    if layout == "export-timm" or (layout == "full" and meta["source"] == "timm"):
        return "timm"
    return "transformers"  # full transformers rungs, export-transformers, export-remote-code


def base_license(meta: dict[str, Any], base_folder: Path | None = None) -> Licence | None:
    """The licence the card carries: the recipe's `hub_license`, else the pretrained base's, from what this
    machine holds (never the network): the base folder's `README.md` or timm `config.json`, the Hugging Face
    cache's copy of the base repo's, or timm's own registry (`pretrained_cfg["license"]`, e.g.
    `resnet50.tv_in1k`: bsd-3-clause). None when nothing names one (or the weights are not pretrained).

    Args:
        meta: the artifact's `peft_ladder.json`.
        base_folder: the local folder the base was loaded from, when known.
    """
    explicit = (meta.get("run_config") or {}).get("hub_license")
    if explicit:
        return Licence(explicit)
    backbone = meta["backbone"]
    if not backbone.get("pretrained", True):
        return None  # random init: no base weights, so no base licence
    if base_folder is not None:
        found = _folder_license(base_folder.joinpath("README.md"), base_folder.joinpath("config.json"))
        if found:
            return found
    hub_id = backbone.get("hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        files = [
            try_to_load_from_cache(hub_id, f, revision=backbone.get("revision")) for f in ("README.md", "config.json")
        ]
        found = _folder_license(*(Path(f) if isinstance(f, str) else None for f in files))
        if found:
            return found
    if hub_id and hub_id.startswith("timm/") and not backbone.get("checkpoint"):
        return _timm_registry_license(hub_id.removeprefix("timm/"))
    return None


def _folder_license(readme: Path | None, config: Path | None) -> Licence | None:
    """A card's YAML `license` (with `license_name` / `license_link`), else a timm config's
    `pretrained_cfg.license`; only values that look like a Hub licence id."""
    if readme is not None and readme.is_file():
        try:
            data = ModelCard.load(readme, ignore_metadata_errors=True).data
        except (ValueError, OSError):  # a README whose YAML header does not parse
            data = None
        found = _license_id(getattr(data, "license", None))
        if found:
            return Licence(found, getattr(data, "license_name", None), getattr(data, "license_link", None))
    if config is not None and config.is_file():
        try:
            pretrained_cfg = json.loads(config.read_text(encoding="utf-8")).get("pretrained_cfg") or {}
        except (ValueError, OSError, AttributeError):
            return None
        found = _license_id(pretrained_cfg.get("license") if isinstance(pretrained_cfg, dict) else None)
        if found:
            return Licence(found)
    return None


def _timm_registry_license(model: str) -> Licence | None:
    """timm's registered `pretrained_cfg` of `<model>.<tag>`: a timm model named by its registry name gets the Hub
    id `timm/<model>.<tag>` (`pretrained_cfg.hf_hub_id`); a local folder's name could match a registry name
    by chance, so the name alone is not asked."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(model)
    except RuntimeError:  # an unknown pretrained tag
        return None
    found = _license_id(getattr(cfg, "license", None))
    return Licence(found) if found else None


def _license_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip().lower()
    return value if LICENSE_ID.match(value) else None


def card_data(
    meta: dict[str, Any], *, library: str | None, note: Any = None, licence: Licence | None = None
) -> ModelCardData:
    """The card's YAML header: what the Hub indexes. `licence` None writes `license: other` (the card body then
    says it is unknown)."""
    backbone = meta["backbone"]
    hub_id = backbone.get("hub_id")
    dataset = (meta.get("run_config") or {}).get("data", {}).get("dataset")
    tags = ["peft-ladder", "transfer-learning", meta["strategy"], meta["modality"]]
    if note is not None:
        tags.append("transfer-note")
    return ModelCardData(
        library_name=library,
        base_model=hub_id if hub_id else None,
        license=licence.id if licence else "other",
        license_name=licence.name if licence else None,
        license_link=licence.link if licence else None,
        pipeline_tag=pipeline_tag(meta["modality"], (meta.get("task") or {}).get("name")),
        tags=tags,
        datasets=[dataset] if isinstance(dataset, str) and _HUB_ID.match(dataset) else None,
        model_name=f"{meta['strategy']} on {backbone.get('hub_id') or portable(backbone['name'])}",
        eval_results=_eval_results(meta, note) or None,
    )


def _metric(name: str) -> tuple[str, str, dict[str, Any] | None]:
    return HUB_METRICS.get(name, (name, name, None))


def _eval_results(meta: dict[str, Any], note: Any) -> list[EvalResult]:
    """`model-index` entries: validation (the decision rows, with their interval in the metric's name) and test,
    per metric."""
    data = (meta.get("run_config") or {}).get("data", {})
    dataset = str(data.get("dataset", "local"))
    on_hub = bool(_HUB_ID.match(dataset))
    common = {
        "task_type": pipeline_tag(meta["modality"], (meta.get("task") or {}).get("name")),
        "dataset_type": portable(dataset),
        "dataset_name": portable(dataset),
        "dataset_config": data.get("config_name") if on_hub else None,
        "dataset_revision": data.get("revision") if on_hub else None,
    }
    results = []
    if note is not None:
        rung = next(r for r in note.rungs if r.id == note.decision.recommended)
        iv = rung.metric
        metric_type, pretty, args = _metric(note.metric)
        seeds = f"{iv.seeds} seed" + ("s" if iv.seeds != 1 else "")
        interval = f"{100 * iv.confidence:.0f}% interval [{iv.low:.4f}, {iv.high:.4f}], {seeds}"
        results.append(
            EvalResult(
                **common,
                dataset_split="validation (decision rows)",
                metric_type=metric_type,
                metric_name=f"{pretty}, decision rows ({interval})",
                metric_args=args,
                metric_value=round(iv.estimate, 4),
            )
        )
        if rung.test:
            results.append(
                EvalResult(
                    **common,
                    dataset_split="test",
                    metric_type=metric_type,
                    metric_name=pretty,
                    metric_args=args,
                    metric_value=round(rung.test[note.metric], 4),
                )
            )
        return results
    metrics = meta.get("metrics") or {}
    for split, result in (metrics.get("splits") or {}).items():
        for metric, value in result.get("metrics", {}).items():
            metric_type, pretty, args = _metric(metric)
            results.append(
                EvalResult(
                    **common,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_name=pretty,
                    metric_args=args,
                    metric_value=round(value, 4),
                )
            )
    return results


def _metric_names(meta: dict[str, Any]) -> list[str]:
    """The columns of the card's results table: every metric any split reports, in first-seen order."""
    names: dict[str, None] = {}
    for result in ((meta.get("metrics") or {}).get("splits") or {}).values():
        names.update(dict.fromkeys(result.get("metrics", {})))
    return list(names)


def render_card(
    meta: dict[str, Any],
    *,
    layout: str,
    library: str | None,
    note: Any = None,
    repo: str = REPO_PLACEHOLDER,
    base_folder: Path | None = None,
) -> ModelCard:
    """The card of an artifact folder (`layout`: adapter, delta or full) or an export (`export-transformers`,
    `export-remote-code`, `export-timm`).

    Args:
        meta: the artifact's `peft_ladder.json` (portable).
        library: the Hub `library_name` (see `library_name`); None leaves it unset.
        note: the ladder's transfer note: its decision, comparisons, flags and figure go on the card.
        base_folder: the local folder the base was loaded from, when known: where its licence is looked up.
    """
    backbone = meta["backbone"]
    hub_id = backbone.get("hub_id")
    licence = base_license(meta, base_folder)
    return ModelCard.from_template(
        card_data(meta, library=library, note=note, licence=licence),
        template_path=str(TEMPLATE),
        meta=meta,
        layout=layout,
        note=note,
        repo=repo,
        base=hub_id or portable(backbone["name"].removeprefix("hf:").removeprefix("timm:")),
        base_is_local=not hub_id,
        labels=list(meta["label2id"]),
        stock_text=meta["modality"] == "text" and is_stock_text(backbone.get("pooling"), meta.get("family_pooling")),
        stock=stock_loading(meta, layout),
        trainable=meta["report"],
        metric_names=_metric_names(meta),
        license_known=licence is not None,
    )


def local_base_folder(meta: dict[str, Any], folder: Path | None = None) -> Path | None:
    """The folder on this machine the base was loaded from: `meta`'s own name when it still is a path, else the
    artifact folder's local-only dotfile (`LOCAL_FILE`). None for a Hub id or a timm model name."""
    names = [meta["backbone"]["name"]]
    if folder is not None and (folder / LOCAL_FILE).is_file():
        try:
            names.append(json.loads((folder / LOCAL_FILE).read_text(encoding="utf-8")).get("name"))
        except (ValueError, OSError):
            pass
    names += [_alias_target(n) for n in names if isinstance(n, str)]
    for name in names:
        if isinstance(name, str):
            path = Path(name.removeprefix("hf:").removeprefix("timm:").removeprefix("local-dir:"))
            # A bare name may be a portable copy of a path (its last part): only a path is looked at.
            if (path.is_absolute() or len(path.parts) > 1) and path.is_dir():
                return path
    return None


def _alias_target(name: str) -> str | None:
    """What an installed alias (`minilm`: the packaged checkpoint's folder) loads, or None."""
    from peft_ladder.backbones.loader import ALIASES

    if name not in ALIASES:
        return None
    try:
        return ALIASES[name].load()
    except ValueError:  # its package is not installed here
        return None


def write_card(
    folder: Path, meta: dict[str, Any], note: Any = None, *, layout: str | None = None, source: Path | None = None
) -> Path:
    """Write `README.md` into an artifact folder (`meta`: its `peft_ladder.json`), or into an export of one.

    Args:
        layout: an export's (`export-timm`, ...); default the artifact's own kind.
        source: the artifact folder `folder` was exported from (where its local-only base path is); default
            `folder` itself.
    """
    folder = Path(folder)
    layout = layout or meta["kind"]
    card = render_card(
        portable(meta),
        layout=layout,
        library=library_name(layout, meta),
        note=note,
        base_folder=local_base_folder(meta, source or folder),
    )
    return write_text_atomic(folder / "README.md", str(card))
