"""What the frozen backbone says before any rung trains, all measured on the training rows' folds (no
validation row is looked at):

- which pooling to use, when a text checkpoint declares none: the family's candidates compared with the
  converged probe (`cv_score_for_task`), the best kept for every rung;
- the depth curve: a converged probe on each block's pooled output. Its peak is the deepest block whose frozen
  features fit the task within one standard error of the best; the blocks after it are the ones to retrain, the
  last_k it implies for partial_unfreeze;
- transferability: LogME and H-score of the head's input, against the same scores of a seeded random
  initialisation of the architecture (the floor), on a smaller seeded subsample (`FLOOR_ROWS`).
Each takes the run's task (single_label, multi_label, regression): the probe is the task's (logistic, multi-label
logistic, ridge) and `CV_READINGS` says which of its CV scores ranks and in which direction.
One forward pass over (a seeded subsample of) the training rows serves all three, whichever pooling the comparison
keeps (each candidate's blocks and head input are captured in it). It also serves the probe rung: its head input
goes into the activation cache under the key the probe's Engine computes (`fill_probe_cache`), so the probe runs
only the rows this pass did not, and the training rows go through the frozen backbone once. The cache is filled
after the evidence is computed: the validation rows it extracts reach only the cache.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from peft_ladder.backbones.backbone import Backbone
from peft_ladder.backbones.pooling import PoolingSpec, pool
from peft_ladder.cache import Cut, KnownRows, TailUnsupported, cache_refusal, fill_cache
from peft_ladder.cache.tail import cut_module
from peft_ladder.config import RunConfig, RungSpec
from peft_ladder.features import capture_head_input
from peft_ladder.ladder.transferability import transferability_scores, unscorable
from peft_ladder.precision import autocast
from peft_ladder.probe import cv_reading, cv_score_for_task
from peft_ladder.strategies import get_strategy
from peft_ladder.tasks import IGNORE, TaskName

logger = logging.getLogger(__name__)

# Training rows of the random-init floor: a seeded subsample of the evidence's rows, the pretrained scores taken on
# the same rows. The floor only ranks pretrained features against a random network's; 256 rows keep that ranking
# off a handful of rows, and the random network runs over 256 rows instead of `ladder.probe.max_rows` (4000).
FLOOR_ROWS = 256

# The CV scores a depth point keeps, by task: the ranking score, its standard error, and the other one the probe
# reports (the loss that chose its l2, or for regression R2 = 1 - MSE on the standardised target).
DEPTH_POINT_KEYS: dict[str, tuple[str, str, str]] = {
    "single_label": ("accuracy", "accuracy_se", "log_loss"),
    "multi_label": ("micro_f1", "micro_f1_se", "bce"),
    "regression": ("mse", "mse_se", "r2"),
}


@dataclass
class FrozenPass:
    """Per-example tensors from one forward pass of the frozen backbone (CPU, float32 features).

    `labels` are the batches' labels as the data gives them: (N,) class ids (single_label), (N, K) 0/1 rows
    (multi_label) or (N,) targets in their own units (regression; the scores standardise them over the rows).
    """

    labels: torch.Tensor
    blocks: list[torch.Tensor]  # pooled output of every block
    head_input: torch.Tensor  # what the head sees
    pooling_inputs: dict[str, torch.Tensor] | None  # per candidate pooling (text), the pooled features
    candidate_blocks: dict[str, list[torch.Tensor]] | None = None  # per candidate, `blocks` as it would pool them
    # Token classification: each feature row is a tagged token (a word's first sub-token), and this is the index,
    # among the pass's rows (sentences), of the sentence it came from. None: one feature row per sentence.
    row_of: torch.Tensor | None = None

    def pooled_as(self, mode: str, own: str) -> FrozenPass | None:
        """This pass as the model pooling with candidate `mode` would give it; None when this pass cannot tell.

        A candidate's pooled features are that model's head input when the model feeds its pooling's output to
        the head as it is (text: pooling -> dropout, the identity in eval mode -> classifier). That holds when the
        model's own pooling `own` gave exactly the head input captured here.
        """
        pooled, blocks = self.pooling_inputs or {}, self.candidate_blocks or {}
        if mode not in pooled or mode not in blocks or own not in pooled:
            return None
        if not torch.equal(pooled[own], self.head_input):
            return None
        return FrozenPass(self.labels, blocks[mode], pooled[mode], None, None)


@dataclass
class DepthCurve:
    """Converged-probe CV score per block, and the partial_unfreeze depth it implies.

    Attributes:
        points: per block: index, name and the task's `DEPTH_POINT_KEYS`: accuracy and its standard error over
            the folds and log-loss (single_label); micro-F1, its standard error and BCE (multi_label); MSE on the
            standardised target, its standard error and R2 (regression).
        peak: the deepest block within one standard error of the best by the task's ranking score (the 1-SE rule:
            of two blocks the data cannot tell apart, the deeper one means less to retrain).
        implied_last_k: blocks after the peak, at least 1 and at most all but one.
        task: the task whose probe scored the blocks.
    """

    points: list[dict[str, Any]]
    peak: int
    implied_last_k: int
    task: TaskName = "single_label"

    def to_dict(self) -> dict[str, Any]:
        """The curve as the note records it. A multi_label or regression curve also says what ranked it; a
        single-label one keeps exactly the keys it had before tasks, which the note's schema (no unknown keys)
        expects."""
        record = asdict(self)
        del record["task"]
        if self.task != "single_label":
            reading = cv_reading(self.task)
            record.update(task=self.task, ranked_by=reading.rank, higher_is_better=reading.higher_is_better)
        return record


@torch.inference_mode()
def frozen_pass(
    backbone: Backbone,
    batches: list[dict[str, torch.Tensor]],
    device: torch.device,
    candidates: tuple[str, ...] = (),
    precision: str = "no",
) -> FrozenPass:
    """Run the frozen model once over `batches`, capturing every block's pooled output, the head's input
    and (text) the pooled features of each candidate pooling, and every block pooled as each candidate would.
    Token classification (batches with `word_labels`): one row per tagged token instead, nothing pooled.
    `precision` (resolved: no, bf16, fp16): the autocast the run's Engine uses, so the head input equals its own."""
    with autocast(precision, device):
        if batches and "word_labels" in batches[0]:
            return _frozen_token_pass(backbone, batches, device)
        return _frozen_pooled_pass(backbone, batches, device, candidates)


def _frozen_pooled_pass(
    backbone: Backbone, batches: list[dict[str, torch.Tensor]], device: torch.device, candidates: tuple[str, ...]
) -> FrozenPass:
    """`frozen_pass` for one prediction per row."""
    model = backbone.model
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    spec = backbone.pooling
    own = _block_mode(spec.mode if spec else None)
    block_mode = {c: _block_mode(c) for c in candidates}  # several candidates pool the blocks alike (pooler, cls)
    per_block: dict[str | None, list[list[torch.Tensor]]] = {
        m: [[] for _ in backbone.layout.blocks] for m in dict.fromkeys([own, *block_mode.values()])
    }
    candidate_rows: dict[str, list[torch.Tensor]] = {c: [] for c in candidates}
    labels, heads = [], []
    mask_holder: dict[str, torch.Tensor | None] = {}

    def block_hook(index: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            for mode, rows in per_block.items():
                rows[index].append(_pool_block(out, mask_holder.get("mask"), mode).float().cpu())

        return hook

    def pooling_hook(_module: nn.Module, args: tuple) -> None:
        hidden, mask, pooler_output = (list(args) + [None, None])[:3]
        for mode in candidates:
            if mode == "pooler" and pooler_output is None:
                continue
            candidate = PoolingSpec(mode, spec.normalize if spec else False)
            candidate_rows[mode].append(pool(hidden, mask, pooler_output, candidate).float().cpu())

    handles = [modules[b.name].register_forward_hook(block_hook(i)) for i, b in enumerate(backbone.layout.blocks)]
    if candidates and "pooling" in modules:
        handles.append(modules["pooling"].register_forward_pre_hook(pooling_hook))
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            mask_holder["mask"] = inputs.get("attention_mask")
            with capture_head_input(model, backbone.layout.head_modules) as captured:
                backbone.logits(model, inputs)
            heads.append(captured[0].float().cpu())
            labels.append(batch["labels"].cpu())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    pooled = {m: torch.cat(rows) for m, rows in candidate_rows.items() if rows}
    blocks = {m: [torch.cat(rows) for rows in per_mode] for m, per_mode in per_block.items()}
    by_candidate = {c: blocks[block_mode[c]] for c in pooled}
    return FrozenPass(torch.cat(labels), blocks[own], torch.cat(heads), pooled or None, by_candidate or None)


def _frozen_token_pass(backbone: Backbone, batches: list[dict[str, torch.Tensor]], device: torch.device) -> FrozenPass:
    """`frozen_pass` for a tagger: every block's output and the head's input at the tagged positions (a word's
    first sub-token), their tags, and the sentence each came from."""
    model, was_training = backbone.model, backbone.model.training
    model.eval()
    modules = dict(model.named_modules())
    per_block: list[list[torch.Tensor]] = [[] for _ in backbone.layout.blocks]
    labels, heads, row_of = [], [], []
    tagged_holder: dict[str, torch.Tensor] = {}

    def block_hook(index: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            per_block[index].append(out[tagged_holder["tagged"]].float().cpu())

        return hook

    handles = [modules[b.name].register_forward_hook(block_hook(i)) for i, b in enumerate(backbone.layout.blocks)]
    offset = 0
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in batch.items() if torch.is_tensor(v)}
            tagged = inputs["labels"] != IGNORE
            tagged_holder["tagged"] = tagged
            with capture_head_input(model, backbone.layout.head_modules, per_token=True) as captured:
                backbone.logits(model, inputs)
            heads.append(captured[0][tagged].float().cpu())
            labels.append(batch["labels"][tagged.cpu()])
            row_of.append(offset + tagged.nonzero()[:, 0].cpu())
            offset += len(batch["labels"])
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    blocks = [torch.cat(rows) for rows in per_block]
    return FrozenPass(torch.cat(labels), blocks, torch.cat(heads), None, None, torch.cat(row_of))


def _block_mode(pooling: str | None) -> str | None:
    """How a block's tokens are pooled for a model that pools its last ones with `pooling` (None: no pooling, the
    tokens are averaged): as the model does, the pooler's first token inside the blocks."""
    return "cls" if pooling == "pooler" else pooling


def _pool_block(out: torch.Tensor, mask: torch.Tensor | None, mode: str | None) -> torch.Tensor:
    """One vector per example from a block's output: feature maps averaged over space; token sequences
    pooled with `mode` (text: see `_block_mode`) or averaged (image tokens, or no mode)."""
    if out.dim() == 4:  # (B, C, H, W)
        return out.mean((2, 3))
    if out.dim() == 3:  # (B, T, H)
        if mode is None or mask is None or mask.shape != out.shape[:2]:
            return out.mean(1)
        return pool(out, mask, None, PoolingSpec(mode, False))
    return out.flatten(1)


def compare_poolings(
    passed: FrozenPass, num_outputs: int, seed: int, task: TaskName = "single_label"
) -> dict[str, dict[str, Any]]:
    """CV score of the task's converged probe on each candidate pooling's features.

    Args:
        passed: the frozen pass, with its candidates' pooled features.
        num_outputs: the head's outputs (classes; labels; 1 for regression).
        seed: shuffles the folds.
        task: single_label, multi_label or regression.

    Returns:
        Per candidate, the task's CV record (`cv_score_for_task`).
    """
    return {
        mode: cv_score_for_task(features, passed.labels, task, num_outputs, seed=seed)
        for mode, features in (passed.pooling_inputs or {}).items()
    }


def best_pooling(scores: dict[str, dict[str, Any]], task: TaskName = "single_label") -> str:
    """Lowest CV loss that chose the probe's l2 (log-loss, BCE, MSE: the probe's own selection score); ties to the
    first candidate (the convention)."""
    select = cv_reading(task).select
    return min(scores, key=lambda m: (round(scores[m][select], 6), list(scores).index(m)))


def pooling_candidates(backbone: Backbone) -> tuple[str, ...]:
    """The family's candidates, when the pooling came from the family's convention (a declared or
    recipe-chosen pooling is used as it is)."""
    if backbone.pooling is None or backbone.pooling.source != "family":
        return ()
    return backbone.family.pooling_candidates


def depth_curve(backbone: Backbone, passed: FrozenPass, seed: int, task: TaskName = "single_label") -> DepthCurve:
    """The task's converged probe's CV score on each block's pooled output, and the depth it implies.

    Args:
        backbone: its layout names the blocks; num_labels is the head's outputs.
        passed: the frozen pass, one pooled feature set per block.
        seed: shuffles the folds.
        task: single_label (ranked by accuracy), multi_label (micro-F1) or regression (MSE, lower is better).
    """
    reading = cv_reading(task)
    points = []
    for i, (block, features) in enumerate(zip(backbone.layout.blocks, passed.blocks)):
        score = cv_score_for_task(features, passed.labels, task, backbone.num_labels, seed=seed, groups=passed.row_of)
        points.append({"block": i, "name": block.name, **{k: score[k] for k in DEPTH_POINT_KEYS[task]}})
    best = max(points, key=reading.oriented)
    floor = reading.oriented(best) - best[reading.rank_se]
    peak = max(p["block"] for p in points if reading.oriented(p) >= floor)
    n = len(points)
    implied = min(max(n - 1 - peak, 1), max(n - 1, 1))
    return DepthCurve(points, peak, implied, task)


def transferability(
    passed: FrozenPass,
    random_init: Backbone,
    batches: list[dict[str, torch.Tensor]],
    device: torch.device,
    positions: list[int],
    task: TaskName = "single_label",
    precision: str = "no",
) -> dict[str, Any]:
    """LogME and H-score of the pretrained head input and of a randomly initialised copy's (the floor), both on
    the rows of `passed` at `positions` (`batches` holds those rows, in that order; see `FLOOR_ROWS`).

    Returns:
        pretrained and random_init ({"logme", "h_score"}), n, feature_dim, seconds. For multi_label and
        regression also the task and `not_applicable`: each score reported as None, with the reason (regression's
        H-score always; see `unscorable`). A single-label record keeps the note's schema from before tasks.
    """
    start = time.perf_counter()
    random_init.model.to(device)
    floor = frozen_pass(random_init, batches, device, precision=precision)
    if passed.row_of is not None:  # a tagger's rows are tokens: those of the sentences at `positions` (ascending)
        positions = torch.isin(passed.row_of, torch.as_tensor(positions)).nonzero()[:, 0].tolist()
    labels = passed.labels[positions]
    if not torch.equal(floor.labels, labels):
        raise RuntimeError("the random-init floor's batches are not the rows at `positions` of the frozen pass")
    features = passed.head_input[positions]
    record: dict[str, Any] = {
        "pretrained": transferability_scores(features.numpy(), labels.numpy(), task),
        "random_init": transferability_scores(floor.head_input.numpy(), labels.numpy(), task),
        "n": len(labels),
        "feature_dim": int(features.shape[1]),
    }
    if task != "single_label":
        record.update(task=task, not_applicable=unscorable(labels.numpy(), task))
    return {**record, "seconds": time.perf_counter() - start}


def probe_cache_refusal(reference: Backbone, config: RunConfig, rungs: list[RungSpec]) -> str | None:
    """Why this pass does not fill the probe rung's head-input cache (`fill_probe_cache`); None when it does.

    It does when a rung trains only the head on cached features (`plan_cut`'s head-input cut). The pass runs
    under the autocast the Engine extracts with (`precision.autocast`), so the two agree at every precision.
    """
    probes = [r for r in rungs if not get_strategy(r.name).trains_backbone]
    if not probes:
        return "no rung trains only the head"
    cache, data = config.cache, config.data
    refusals = [
        cache_refusal(
            reference, enabled=cache.enabled, augment=data.augment, bn_policy=r.options.get("bn_policy", "auto")
        )
        for r in probes
    ]
    if all(refusals):
        return refusals[0]
    if reference.pooling is not None and reference.pooling.mode == "token":
        return "a tagger's frozen pass keeps its tagged tokens only; the probe rung caches every token itself"
    try:
        cut_module(reference, Cut(None))
    except TailUnsupported as err:
        return str(err)
    return None


def fill_probe_cache(
    reference: Backbone,
    passed: FrozenPass,
    rows: list[int],
    encoded: dict[str, Any],
    collate: Any,
    *,
    preprocessing: dict[str, Any],
    config: RunConfig,
    device: torch.device,
    precision: str = "no",
) -> dict[str, Any] | None:
    """Cache the head input of every split in `encoded` under the keys the probe rung's Engine computes, the
    training rows at `rows` taken from `passed` (their head input, computed by `reference` at `precision`, the
    resolved one the Engine extracts at): only the other rows run through the model.

    Returns:
        The cache record (hits, misses, seconds), or None when the cache cannot hold the rows (`cache.max_gib`, or
        head inputs that are not one vector per row); the probe's Engine then decides as it always did.
    """
    tcfg = config.train
    try:
        _, record = fill_cache(
            reference,
            Cut(None),
            encoded,
            collate,
            preprocessing=preprocessing,
            cache_dir=config.cache.dir,
            max_gib=config.cache.max_gib,
            batch_size=tcfg.eval_batch_size or 2 * tcfg.batch_size,
            device=device,
            precision=precision,
            known={"train": KnownRows(rows, passed.head_input, passed.labels)},
        )
    except TailUnsupported as err:
        logger.info(f"ladder: the probe's head input is not cached ahead ({err})")
        return None
    logger.info(
        f"ladder: the probe's head input cached ahead for {len(encoded)} splits ({record['hits']} already there, "
        f"{record['misses']} written; the frozen pass's {len(rows)} training rows not run again) in "
        f"{record['seconds']:.1f}s"
    )
    return record


def subsample(n: int, max_rows: int, seed: int) -> list[int]:
    """At most `max_rows` row indices, seeded, in order."""
    if n <= max_rows:
        return list(range(n))
    return sorted(np.random.default_rng(seed).choice(n, max_rows, replace=False).tolist())
