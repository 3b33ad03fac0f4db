"""How each folder we write meets the stock loader a Hugging Face user tries first: the one place that decides
it. Either that call gives `load_adapted`'s logits with the label names (`same_logits`), or it raises an error
that says what to call instead; never a model that loads and predicts wrong. tests/hub/test_stock_loading.py
checks every row in a fresh process, with the base in a Hugging Face cache as a download leaves it.

Rows, by folder layout and model family:
- whole models (full, scratch rungs and every export): the library's own class; a mean-pooled text encoder
  names `PooledEncoderForSequenceClassification` through `auto_map`, so transformers asks for
  `trust_remote_code=True` and then loads the right model.
- adapters on a base whose stock class pools the way the rung was trained (BERT's pooler, timm, transformers
  image models): stock peft over the base. peft builds the base from the base's own config, which knows nothing
  of the task's labels: they are passed (without them peft stops on the head's size, or with two labels names
  them LABEL_0 and LABEL_1).
- adapters on other text encoders (mean pooling): peft's `AutoPeftModel...` refuses (the adapter names
  peft_ladder's model class, outside peft's import allowlist) and transformers refuses (`config.json` names a
  class that raises); `load_adapted` or an export reproduces them.
- deltas (the probe, BitFit, partial unfreeze: only the changed tensors): every stock loader refuses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StockLoading:
    """What the first stock call does with a folder (`REPO` stands for the folder or repo, `BASE` for the base)."""

    call: str  # the call a Hugging Face user would try first
    same_logits: bool  # True: it reproduces `load_adapted`'s logits and labels; False: it raises
    why: str  # one sentence: what the call needs, or why it refuses and what to call instead

    def to_dict(self) -> dict[str, Any]:
        return {"call": self.call, "same_logits": self.same_logits, "why": self.why}


INSTEAD = "`peft_ladder.load_adapted(REPO)` reproduces it, and `peft-ladder export REPO --out DIR` writes a folder stock tools load"


def is_token_model(pooling: Any) -> bool:
    """Whether a text model tags every token (token classification: nothing pooled)."""
    return isinstance(pooling, dict) and pooling.get("mode") == "token"


def is_stock_text(pooling: Any, family_pooling: str | None) -> bool:
    """Whether a text model is exactly its family's `...ForSequenceClassification` (the pretrained pooler and
    one linear layer: BERT, ALBERT) or `...ForTokenClassification` (encoder, dropout, one linear layer on every
    token: every encoder family), so stock transformers and peft reproduce it without custom code."""
    if is_token_model(pooling):
        return True
    return (
        isinstance(pooling, dict)
        and pooling.get("mode") == "pooler"
        and not pooling.get("normalize")
        and family_pooling == "pooler"
    )


def stock_loading(meta: dict[str, Any], layout: str | None = None) -> StockLoading:
    """The row for an artifact's `peft_ladder.json` (`meta`), or for its export (`layout`: export-timm,
    export-transformers, export-remote-code)."""
    layout = layout or meta["kind"]
    source, modality = meta["source"], meta["modality"]
    pooling = meta["backbone"].get("pooling")
    stock_text = modality == "text" and is_stock_text(pooling, meta.get("family_pooling"))
    task = "text-classification" if modality == "text" else "image-classification"
    auto_peft = "AutoPeftModelForSequenceClassification"
    if is_token_model(pooling):
        task, auto_peft = "token-classification", "AutoPeftModelForTokenClassification"
    if layout == "export-timm" or (layout == "full" and source == "timm"):
        return StockLoading('timm.create_model("local-dir:REPO", pretrained=True)', True, "timm's own layout.")
    if layout == "export-transformers" or (layout == "full" and (modality == "image" or stock_text)):
        return StockLoading(f'pipeline("{task}", model=REPO)', True, "the family's own transformers class.")
    if layout in ("export-remote-code", "full"):
        return StockLoading(
            f'pipeline("{task}", model=REPO, trust_remote_code=True)',
            True,
            "transformers has no class with this pooling: without trust_remote_code=True it refuses; with it, it "
            "runs modeling_peft_ladder.py from the folder (torch and transformers only).",
        )
    if layout == "adapter" and source == "timm":
        return StockLoading(
            "PeftModel.from_pretrained(timm.create_model(BASE, pretrained=True, num_classes=len(labels)), REPO)",
            True,
            "peft over timm; the label names are config.json's label_names.",
        )
    if layout == "adapter" and modality == "image":
        return StockLoading(
            "PeftModel.from_pretrained(AutoModelForImageClassification.from_pretrained(BASE, num_labels=..., "
            "id2label=..., label2id=..., ignore_mismatched_sizes=True), REPO)",
            True,
            "peft builds nothing for image tasks itself: the base gets the task's labels from the folder's config.json.",
        )
    if layout == "adapter" and stock_text:
        return StockLoading(
            f"{auto_peft}.from_pretrained(REPO, num_labels=..., id2label=..., "
            "label2id=..., ignore_mismatched_sizes=True)",
            True,
            "peft builds the base from the base's own config, which has no labels: pass the folder's (config.json); "
            "without them peft stops on the head's size.",
        )
    if layout == "adapter":  # a text encoder with another pooling
        call, what = (
            "AutoPeftModelForSequenceClassification.from_pretrained(REPO)",
            "its pooling has no transformers class",
        )
    else:  # a delta
        what = "it holds only the tensors that training changed"
        call = (
            'timm.create_model("local-dir:REPO", pretrained=True)'
            if source == "timm"
            else f'pipeline("{task}", model=REPO)'
        )
    return StockLoading(call, False, f"stock loaders refuse this {layout} folder ({what}): {INSTEAD}.")
