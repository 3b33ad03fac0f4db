"""Model cards (`README.md`) for rung folders, the ladder's published artifact and exports, made with
huggingface_hub's `ModelCard` / `ModelCardData`: Hub metadata (library, base model, pipeline tag, tags,
datasets, `model-index` metrics with their intervals), the transfer note's substance when there is one, and a
usage snippet for every way the folder loads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from peft_ladder.hub.portable import portable
from peft_ladder.io import write_text_atomic

TEMPLATE = Path(__file__).with_name("model_card.md.j2")
REPO_PLACEHOLDER = "REPO"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def pipeline_tag(modality: str) -> str:
    return "text-classification" if modality == "text" else "image-classification"


def stock_text_head(meta: dict[str, Any]) -> bool:
    """Whether a text model is exactly its family's `...ForSequenceClassification` (the pretrained pooler and
    one linear layer: BERT, ALBERT), so stock transformers and peft reproduce it without custom code."""
    pooling = meta["backbone"].get("pooling")
    return (
        meta["modality"] == "text"
        and isinstance(pooling, dict)
        and pooling.get("mode") == "pooler"
        and not pooling.get("normalize")
        and meta.get("family_pooling") == "pooler"
    )


def card_data(meta: dict[str, Any], *, library: str, note: Any = None) -> ModelCardData:
    """The card's YAML header: what the Hub indexes."""
    backbone = meta["backbone"]
    hub_id = backbone.get("hub_id")
    dataset = (meta.get("run_config") or {}).get("data", {}).get("dataset")
    tags = ["peft-ladder", "transfer-learning", meta["strategy"], meta["modality"]]
    if note is not None:
        tags.append("transfer-note")
    return ModelCardData(
        library_name=library,
        base_model=hub_id if hub_id else None,
        pipeline_tag=pipeline_tag(meta["modality"]),
        tags=tags,
        datasets=[dataset] if isinstance(dataset, str) and _HUB_ID.match(dataset) else None,
        model_name=f"{meta['strategy']} on {backbone.get('hub_id') or portable(backbone['name'])}",
        eval_results=_eval_results(meta, note) or None,
    )


def _eval_results(meta: dict[str, Any], note: Any) -> list[EvalResult]:
    """`model-index` entries: validation (the decision rows, with their interval) and test, per metric."""
    results = []
    task = pipeline_tag(meta["modality"])
    dataset = str((meta.get("run_config") or {}).get("data", {}).get("dataset", "local"))
    name = portable(dataset)
    if note is not None:
        rung = next(r for r in note.rungs if r.id == note.decision.recommended)
        iv = rung.metric
        results.append(
            EvalResult(
                task_type=task,
                dataset_type=name,
                dataset_name=name,
                dataset_split="validation (decision rows)",
                metric_type=note.metric,
                metric_value=round(iv.estimate, 4),
                metric_args={
                    "interval_low": round(iv.low, 4),
                    "interval_high": round(iv.high, 4),
                    "confidence": iv.confidence,
                    "seeds": iv.seeds,
                },
            )
        )
        if rung.test:
            results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=name,
                    dataset_name=name,
                    dataset_split="test",
                    metric_type=note.metric,
                    metric_value=round(rung.test[note.metric], 4),
                )
            )
        return results
    metrics = meta.get("metrics") or {}
    for split, result in (metrics.get("splits") or {}).items():
        for metric, value in result.get("metrics", {}).items():
            results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=name,
                    dataset_name=name,
                    dataset_split=split,
                    metric_type=metric,
                    metric_value=round(value, 4),
                )
            )
    return results


def render_card(
    meta: dict[str, Any], *, layout: str, library: str, note: Any = None, repo: str = REPO_PLACEHOLDER
) -> ModelCard:
    """The card of an artifact folder (`layout`: adapter, delta or full) or an export (`export-transformers`,
    `export-remote-code`, `export-timm`)."""
    backbone = meta["backbone"]
    hub_id = backbone.get("hub_id")
    return ModelCard.from_template(
        card_data(meta, library=library, note=note),
        template_path=str(TEMPLATE),
        meta=meta,
        layout=layout,
        note=note,
        repo=repo,
        base=hub_id or portable(backbone["name"].removeprefix("hf:").removeprefix("timm:")),
        base_is_local=not hub_id,
        labels=list(meta["label2id"]),
        stock_text=stock_text_head(meta),
        trainable=meta["report"],
    )


def write_card(folder: Path, meta: dict[str, Any], note: Any = None) -> Path:
    """Write `README.md` into an artifact folder (`meta`: its `peft_ladder.json`)."""
    layout = meta["kind"]
    library = "peft" if layout == "adapter" else "peft-ladder"
    card = render_card(portable(meta), layout=layout, library=library, note=note)
    return write_text_atomic(Path(folder) / "README.md", str(card))
