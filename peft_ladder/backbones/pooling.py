"""How a text encoder's token states become one feature vector: the pooling a checkpoint was trained for.

A sentence-transformers checkpoint declares its pooling (`modules.json` -> `1_Pooling/config.json`, and a
`Normalize` module when embeddings are unit length): all-MiniLM-L6-v2 is mean-pooled and normalised, and
a probe on its CLS or pooler output throws away what it was trained to produce (0.763 against 0.853 on
a held-out 6-class task). Other checkpoints take their family's convention (`families.py`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn

logger = logging.getLogger(__name__)

PoolingMode = Literal["cls", "mean", "max", "pooler", "last", "token"]
POOLING_MODES: tuple[str, ...] = ("cls", "mean", "max", "pooler", "last")
# sentence-transformers' Pooling config keys -> our modes (mean_sqrt_len and weightedmean are not supported).
_ST_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}


@dataclass(frozen=True)
class PoolingSpec:
    """Attributes:
    mode: cls (first token), mean / max (over real tokens), pooler (the encoder's own pooler output),
        last (last real token, decoder-style); token (none: every token keeps its state, for token
        classification; set by the task, never by a recipe).
    normalize: L2-normalise the pooled vector (sentence-transformers' `Normalize` module).
    source: where the choice came from: recipe, sentence-transformers, family, or probe (compared on
        the training folds).
    """

    mode: PoolingMode
    normalize: bool = False
    source: str = "family"

    def describe(self) -> str:
        return f"{self.mode}{' + L2 normalise' if self.normalize else ''} ({self.source})"

    def to_dict(self) -> dict:
        return asdict(self)


class Pooling(nn.Module):
    """Pool `last_hidden_state` (B, T, H) over the real tokens of `attention_mask` (B, T); no parameters."""

    def __init__(self, spec: PoolingSpec):
        super().__init__()
        self.spec = spec

    def forward(
        self,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pooler_output: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return pool(hidden, attention_mask, pooler_output, self.spec)

    def extra_repr(self) -> str:
        return self.spec.describe()


def pool(
    hidden: torch.Tensor,
    attention_mask: torch.Tensor | None,
    pooler_output: torch.Tensor | None,
    spec: PoolingSpec,
) -> torch.Tensor:
    """One pooled vector per row; see `PoolingSpec` for the modes."""
    mask = (
        torch.ones(hidden.shape[:2], dtype=hidden.dtype, device=hidden.device)
        if attention_mask is None
        else attention_mask.to(hidden.dtype)
    )
    mode = spec.mode
    if mode == "token":
        return hidden
    if mode == "cls":
        out = hidden[:, 0]
    elif mode == "mean":
        out = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
    elif mode == "max":
        out = hidden.masked_fill(mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min).max(1).values
    elif mode == "last":
        last = (mask.sum(1).long() - 1).clamp(min=0)
        out = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    elif mode == "pooler":
        if pooler_output is None:
            raise ValueError("pooling `pooler` needs an encoder with a pooler; use cls or mean for this backbone.")
        out = pooler_output
    else:
        raise ValueError(f"unknown pooling {mode!r}; use one of {POOLING_MODES}.")
    return nn.functional.normalize(out, dim=-1) if spec.normalize else out


def sentence_transformers_pooling(
    name: str, *, revision: str | None = None, token: str | None = None
) -> PoolingSpec | None:
    """The pooling a sentence-transformers checkpoint declares, or None when it is not one.

    Reads `modules.json` and the Pooling module's `config.json` from a local folder, or from the Hub
    (through the Hugging Face cache, so it works offline once downloaded).
    """
    modules = _read_json(name, "modules.json", revision, token)
    if not isinstance(modules, list):
        return None
    pooling = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    if pooling is None:
        return None
    config = _read_json(name, f"{pooling.get('path', '1_Pooling').strip('/')}/config.json", revision, token) or {}
    if isinstance(config.get("pooling_mode"), str):  # newer sentence-transformers write the mode by name
        chosen = [{"cls": "cls", "mean": "mean", "max": "max", "lasttoken": "last"}.get(config["pooling_mode"])]
    else:
        chosen = [mode for key, mode in _ST_MODES.items() if config.get(key)]
    chosen = [c for c in chosen if c]
    if len(chosen) != 1:
        logger.warning("%s declares pooling %s, which peft_ladder does not reproduce; using mean", name, config)
        chosen = ["mean"]
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
    return PoolingSpec(chosen[0], normalize, "sentence-transformers")


def _read_json(name: str, filename: str, revision: str | None, token: str | None) -> object | None:
    folder = Path(name)
    if folder.is_dir():
        path = folder / filename
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(name, filename, revision=revision, token=token)
    except Exception:  # not on the Hub, offline and not cached, or no such file: not a sentence-transformers repo
        return None
    return json.loads(Path(path).read_text())
