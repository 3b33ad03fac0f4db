"""`Ladder`: climb from the frozen probe towards full fine-tuning, one rung at a time, each against the
best simpler rung and the from-scratch control, and write the transfer note.

Every rung trains on the same splits, seeds, preprocessing and epoch budget, with the same LR search
(the rung's default LR times the same multipliers, chosen on validation). The probe's trained head
starts every deeper rung (LP-FT), so the head phase is paid once.
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import PartialState
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from peft_ladder.artifacts import _swap_into_place
from peft_ladder.cache import Cut, TailUnsupported, cached_activations
from peft_ladder.config import RunConfig, dump_config, load_config, validate_config
from peft_ladder.data import encode_splits
from peft_ladder.engine import Engine, backbone_for, build_splits
from peft_ladder.ladder.decision import ClimbRule, Flag, RungPredictions
from peft_ladder.ladder.drift import DriftTracker
from peft_ladder.ladder.evidence import decision_why, unfreeze_more_evidence
from peft_ladder.features import penultimate_features
from peft_ladder.ladder.note import RungEntry, TransferNote, write_note
from peft_ladder.ladder.plot import plot_note
from peft_ladder.ladder.stats import Interval, bootstrap
from peft_ladder.ladder.transferability import transferability_scores
from peft_ladder.strategies import get_strategy

logger = logging.getLogger(__name__)

HEAD_FILE = "head.safetensors"
PREDICTIONS_FILE = "predictions.npz"


@dataclass
class Trial:
    """One training run of a rung: an LR and a seed."""

    lr: float
    head_lr: float
    seed: int
    folder: Path
    results: dict[str, Any]
    predictions: dict[str, np.ndarray]

    @property
    def val_predictions(self) -> np.ndarray:
        return self.predictions["validation_predictions"]


class Ladder:
    """Run the ladder a recipe describes.

    Args:
        config: a run config with a `ladder` section.
        run_all: run every rung even after the climb rule stops (default: `ladder.run_all`).
        resume: reuse trials that already finished in `output_dir` with the same config.

    Example:
        >>> note = Ladder.from_recipe("recipes/tiny/minilm_ladder.yaml").run()
        >>> note.decision.recommended
    """

    def __init__(self, config: RunConfig, *, run_all: bool | None = None, resume: bool = False):
        if config.ladder is None:
            raise ValueError("this config has no `ladder` section; train one strategy with peft_ladder.engine.train.")
        self.config = config
        self.cfg = config.ladder if run_all is None else config.ladder.model_copy(update={"run_all": run_all})
        self.output_dir = Path(config.output_dir)
        self.resume = resume
        self.state = PartialState()

    @classmethod
    def from_recipe(cls, recipe: str | Path, overrides: list[str] | None = None, **kwargs: Any) -> Ladder:
        return cls(load_config(recipe, overrides), **kwargs)

    def _print(self, message: str) -> None:
        if self.state.is_main_process:
            print(message, flush=True)

    # ---- the climb -----------------------------------------------------------------------------
    def run(self) -> TransferNote:
        start = time.perf_counter()
        cfg = self.cfg
        note_path = self.output_dir / "transfer_note.json"
        if note_path.exists() and not (self.config.overwrite_output_dir or self.resume):
            raise FileExistsError(
                f"{note_path} already holds a finished ladder; set overwrite_output_dir=true, resume, or choose "
                "another output_dir."
            )
        self.seeds = cfg.seeds or [self.config.train.seed]
        self.splits = build_splits(self.config)
        reference = backbone_for(self.config, self.splits.label_names)
        reference.model.to(self.state.device).eval()
        data_cfg = self.config.data.model_copy(update={"augment": False})
        encoded, collate, self.preprocessing = encode_splits(self.splits, reference, data_cfg)
        # Every rung sees the same inputs, so they are encoded once here; augmented images are
        # transformed per rung instead (their train transform differs from this one).
        augmented = reference.modality == "image" and self.config.data.augment
        self.encoded = None if augmented else (encoded, collate, self.preprocessing)
        transfer = (
            self._transferability(reference, {"train": encoded["train"]}, collate) if cfg.transferability else None
        )
        n_probe = min(cfg.drift.probe_batch_size, len(encoded["validation"]))
        probe_batch = collate([encoded["validation"][i] for i in range(n_probe)])
        probe_batch.pop("labels", None)
        self.drift = DriftTracker(reference, [probe_batch], cfg.drift)
        labels = np.asarray(self.splits.validation["labels"])
        rule = ClimbRule(cfg, labels)

        entries: list[RungEntry] = []
        run_preds: list[RungPredictions] = []
        skipped: list[str] = []
        self.head_state: dict[str, torch.Tensor] | None = None
        self.head_from: str | None = None
        self.head_lr = self.config.train.head_lr
        chosen_dirs: dict[str, Path] = {}
        for index, rung in enumerate(cfg.rungs):
            if rule.state.stopped and not cfg.run_all:
                skipped.append(rung["id"])
                continue
            entry, preds, folder = self._climb_rung(index, rung, "rung")
            entries.append(entry)
            run_preds.append(preds)
            chosen_dirs[entry.id] = folder
            comparison = rule.observe(preds)
            if comparison is not None:
                c = comparison.interval
                self._print(
                    f"ladder: {preds.id} vs {comparison.reference}: {cfg.metric} {c.estimate:+.4f} "
                    f"[{c.low:+.4f}, {c.high:+.4f}] -> {'climb' if rule.state.best is preds else 'no reliable gain'}"
                )
        rule.finish()

        scratch_entry, scratch_preds = None, None
        if cfg.scratch:
            rung = {"id": "scratch", "name": "scratch", "lr": None}
            scratch_entry, scratch_preds, folder = self._climb_rung(len(cfg.rungs), rung, "scratch")
            chosen_dirs["scratch"] = folder

        flags, extra = rule.flags(run_preds, scratch_preds)
        recommended = rule.state.best.id
        by_id = {e.id: e for e in [*entries, *([scratch_entry] if scratch_entry else [])]}
        for entry in entries:
            if entry.drift and entry.drift.warnings:
                flags.append(
                    Flag(
                        "drift",
                        entry.id,
                        f"{entry.id} moved the backbone past the drift thresholds ({', '.join(entry.drift.warnings)}).",
                    )
                )
        for name, result in by_id[recommended].slices.items():
            if result.fails:
                flags.append(
                    Flag(
                        "slice_fails",
                        recommended,
                        f"slice {name!r} stays below the overall {cfg.metric} under the recommended rung.",
                        Interval(**result.metric.model_dump()),
                    )
                )

        artifact = self._publish(chosen_dirs[recommended] / "artifact")
        # A "vs_probe" comparison repeats a climb step whose reference was the probe; keep one of each pair.
        seen = {(c.candidate, c.reference) for c in rule.state.comparisons}
        comparisons = [*rule.state.comparisons, *(c for c in extra if (c.candidate, c.reference) not in seen)]
        note = TransferNote(
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            backbone={
                "name": reference.spec.name,
                "source": reference.source,
                "modality": reference.modality,
                "num_blocks": reference.layout.num_blocks,
                "parameters": sum(p.numel() for p in reference.model.parameters()),
                "description": reference.describe(),
            },
            data={
                "dataset": self.config.data.dataset,
                "n_train": len(self.splits.train),
                "n_validation": len(self.splits.validation),
                "n_test": len(self.splits.test) if self.splits.test is not None else 0,
                "label_names": self.splits.label_names,
                "preprocessing": self.preprocessing,
                "notes": self.splits.notes,
                "slices": list(self.splits.slices),
                "epochs": self.config.train.epochs,
            },
            metric=cfg.metric,
            confidence=cfg.confidence,
            bootstrap_samples=cfg.bootstrap_samples,
            min_gain=cfg.min_gain,
            seeds=self.seeds,
            lr_multipliers=cfg.lr_search.multipliers,
            drift_thresholds=cfg.drift.model_dump(exclude={"probe_batch_size"}),
            transferability=transfer,
            rungs=entries,
            scratch=scratch_entry,
            comparisons=[c.to_dict() for c in comparisons],
            decision={
                "recommended": recommended,
                "stop_reason": rule.state.stop_reason,
                "stopped_at": rule.state.stopped_at,
                "rungs_run": [e.id for e in entries],
                "rungs_skipped": skipped,
                "run_all": cfg.run_all,
                "why": decision_why(rule, by_id, cfg),
            },
            flags=[f.to_dict() for f in flags],
            unfreeze_more_evidence=[],
            artifact=str(artifact),
            total_seconds=0.0,
        )
        note.unfreeze_more_evidence = unfreeze_more_evidence(note, rule, skipped, [r["id"] for r in cfg.rungs])
        self._prune(entries, scratch_entry, recommended)
        note.total_seconds = time.perf_counter() - start
        if self.state.is_main_process:
            write_note(note, self.output_dir)
            plot_note(note, self.output_dir / "transfer_note.png")
        self.state.wait_for_everyone()
        self._print(
            f"ladder done: recommended {recommended} ({rule.state.stop_reason}); "
            f"note: {self.output_dir / 'transfer_note.md'}; artifact: {artifact}"
        )
        return note

    # ---- one rung: LR search, seeds, its entry --------------------------------------------------
    def _climb_rung(self, index: int, rung: dict[str, Any], role: str) -> tuple[RungEntry, RungPredictions, Path]:
        strategy = get_strategy(rung["name"])
        head_only = not strategy.trains_backbone
        tcfg = self.config.train
        base = rung.get("lr") or (tcfg.head_lr if head_only else strategy.default_lr or tcfg.backbone_lr)
        folder = self.output_dir / "rungs" / f"{index:02d}_{rung['id']}"
        lrs = ", ".join(f"{base * m:.2g}" for m in self.cfg.lr_search.multipliers)
        self._print(f"ladder: rung {rung['id']} ({rung['name']}), LRs {lrs}")
        search = [self._trial(folder, rung, role, base * m, self.seeds[0]) for m in self.cfg.lr_search.multipliers]
        best = max(search, key=lambda t: (t.results["validation"][self.cfg.metric], -t.results["validation"]["loss"]))
        seeded = [best, *(self._trial(folder, rung, role, best.lr, s) for s in self.seeds[1:])]
        if head_only and role == "rung" and self.head_state is None:
            self.head_state = load_file(str(best.folder / HEAD_FILE))
            self.head_from, self.head_lr = rung["id"], best.head_lr

        preds = RungPredictions(rung["id"], rung["name"], [t.val_predictions for t in seeded])
        labels = best.predictions["validation_labels"]
        if not np.array_equal(labels, np.asarray(self.splits.validation["labels"])):
            raise RuntimeError(f"rung {rung['id']} scored a different validation set (order or rows) than the ladder.")
        interval = bootstrap(
            preds.predictions,
            labels,
            self.cfg.metric,
            samples=self.cfg.bootstrap_samples,
            confidence=self.cfg.confidence,
        )
        slices = {}
        for name, rows in self.splits.slices.items():
            if not rows:
                continue
            idx = np.asarray(rows)
            s = bootstrap(
                [p[idx] for p in preds.predictions],
                labels[idx],
                self.cfg.metric,
                samples=self.cfg.bootstrap_samples,
                confidence=self.cfg.confidence,
            )
            slices[name] = {"n": len(rows), "metric": s.to_dict(), "fails": s.high < interval.estimate}
        results = best.results
        for trial in seeded:
            self._check_same_preprocessing(rung["id"], trial.results["preprocessing"])
        history = results["history"]
        metric_keys = {"loss", *self.config.metrics}
        options = {k: v for k, v in rung.items() if k not in ("id", "name", "lr")}
        trainable = dict(results["trainable"])
        trainable["frozen_parts"] = [p["part"] for p in trainable["parts"] if p["trainable"] == 0]
        entry = RungEntry(
            id=rung["id"],
            strategy=rung["name"],
            options=options,
            role=role,
            head_from=self._head_from_for(strategy, role),
            lr=best.lr,
            head_lr=best.head_lr,
            lr_search=[
                {
                    "lr": t.lr,
                    "metric": t.results["validation"][self.cfg.metric],
                    "loss": t.results["validation"]["loss"],
                    "seconds": t.results["train_seconds"],
                    "chosen": t is best,
                }
                for t in search
            ],
            metric=interval.to_dict(),
            validation=_mean_metrics([t.results["validation"] for t in seeded]),
            test=_mean_metrics([t.results["test"] for t in seeded]) if "test" in results else None,
            trainable=trainable,
            drift=history[-1].get("drift") if history else None,
            drift_per_epoch=[rec["drift"] for rec in history if "drift" in rec],
            learning_curve=[{k: v for k, v in rec.items() if k in metric_keys} for rec in history],
            slices=slices,
            train_seconds=sum(t.results["train_seconds"] for t in seeded),
            search_seconds=sum(t.results["train_seconds"] for t in {id(t): t for t in [*search, *seeded]}.values()),
            peak_memory=results.get("peak_memory"),
            artifact=str(best.folder / "artifact"),
        )
        self._print(
            f"ladder: {rung['id']} chose lr {best.lr:.1e}: {self.cfg.metric} {interval.estimate:.4f} "
            f"[{interval.low:.4f}, {interval.high:.4f}]"
        )
        return entry, preds, best.folder

    def _check_same_preprocessing(self, rung_id: str, record: dict[str, Any]) -> None:
        """Rungs compared with each other must see identical inputs: only depth and LR may differ."""
        first = getattr(self, "_trial_preprocessing", None)
        if first is None:
            self._trial_preprocessing = record
        elif record != first:
            raise RuntimeError(
                f"rung {rung_id} ran with preprocessing {record}, the earlier rungs with {first}; the ladder "
                "only compares rungs that see the same inputs."
            )

    def _head_from_for(self, strategy: Any, role: str) -> str | None:
        return self.head_from if role == "rung" and strategy.trains_backbone and self.head_state is not None else None

    def _trial(self, rung_dir: Path, rung: dict[str, Any], role: str, lr: float, seed: int) -> Trial:
        strategy = get_strategy(rung["name"])
        train = self.config.train.model_dump()
        train["seed"] = seed
        head_state = None
        if not strategy.trains_backbone:
            train["head_lr"] = lr
        elif role == "scratch":
            # Random weights everywhere: one LR for the whole network is the from-scratch recipe.
            train["head_lr"] = train["backbone_lr"] = lr
        else:
            train["backbone_lr"] = lr
            train["head_lr"] = max(self.head_lr, lr)
            if self.head_state is not None:
                head_state = self.head_state
                train["lpft"]["enabled"] = False  # the probe already trained the head: phase 1 is not paid again
        folder = rung_dir / f"lr{lr:.2e}_seed{seed}"
        base = self.config.model_dump(mode="json", exclude={"ladder"})
        trial_cfg = validate_config(
            {
                **base,
                "strategy": {"name": rung["name"], **{k: v for k, v in rung.items() if k not in ("id", "name", "lr")}},
                "train": train,
                "output_dir": str(folder),
                "overwrite_output_dir": True,
            },
            where=f"ladder rung {rung['id']}",
        )
        done = self._finished_trial(folder, trial_cfg, head_state)
        if done is not None:
            self._print(f"ladder: reusing finished trial {folder}")
            return Trial(lr, trial_cfg.train.head_lr, seed, folder, *done)
        callbacks = [self.drift] if role == "rung" else []
        engine = Engine(trial_cfg, splits=self.splits, head_state=head_state, callbacks=callbacks, encoded=self.encoded)
        results = engine.run()
        predictions = {}
        for split, (preds, labels) in engine.predictions.items():
            predictions[f"{split}_predictions"] = np.asarray(preds)
            predictions[f"{split}_labels"] = np.asarray(labels)
        if self.state.is_main_process:
            if not strategy.trains_backbone:
                head = {k: v.detach().cpu().contiguous() for k, v in engine.adapted.backbone.head_state_dict().items()}
                save_file(head, str(folder / HEAD_FILE))
            _savez_atomic(folder / PREDICTIONS_FILE, predictions)
            if self.cfg.keep != "all":
                shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        self.state.wait_for_everyone()
        del engine
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return Trial(lr, trial_cfg.train.head_lr, seed, folder, results, predictions)

    def _finished_trial(
        self, folder: Path, trial_cfg: RunConfig, head_state: dict[str, torch.Tensor] | None
    ) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """A trial of an earlier, interrupted ladder with the same config, when resuming."""
        if not self.resume:
            return None
        files = [folder / "config.yaml", folder / "metrics.json", folder / PREDICTIONS_FILE]
        if not all(f.exists() for f in files) or files[0].read_text() != dump_config(trial_cfg):
            return None
        with np.load(folder / PREDICTIONS_FILE, allow_pickle=False) as data:
            predictions = {k: data[k] for k in data.files}
        return json.loads((folder / "metrics.json").read_text()), predictions

    # ---- before training: transferability of the frozen features -------------------------------
    def _transferability(self, reference: Any, train: dict[str, Any], collate: Any) -> dict[str, Any]:
        start = time.perf_counter()
        feats, labels = self._frozen_features(reference, train, collate)
        random_init = backbone_for(self.config, self.splits.label_names, pretrained=False)
        random_init.model.to(self.state.device)
        random_feats, _ = self._frozen_features(random_init, train, collate)
        del random_init
        scores = {
            "pretrained": transferability_scores(feats.numpy(), labels.numpy()),
            "random_init": transferability_scores(random_feats.numpy(), labels.numpy()),
            "n": len(labels),
            "feature_dim": feats.shape[1],
            "seconds": time.perf_counter() - start,
        }
        p, r = scores["pretrained"], scores["random_init"]
        self._print(
            f"ladder: transferability of frozen features: LogME {p['logme']:.4f} (random init {r['logme']:.4f}), "
            f"H-score {p['h_score']:.4f} (random init {r['h_score']:.4f})"
        )
        return scores

    def _frozen_features(self, backbone: Any, train: dict[str, Any], collate: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate features of the training split. From the activation cache when it is on: the same
        entry the probe's trials then train on, so the backbone runs over the data once for both."""
        cfg, tcfg = self.config, self.config.train
        bs = tcfg.eval_batch_size or 2 * tcfg.batch_size
        if cfg.cache.enabled:
            try:
                tensors, record = cached_activations(
                    backbone,
                    Cut(None),
                    train,
                    collate,
                    preprocessing=self.preprocessing,
                    cache_dir=cfg.cache.dir,
                    max_gib=cfg.cache.max_gib,
                    batch_size=bs,
                    device=self.state.device,
                    precision=tcfg.mixed_precision,
                )
                self._print(f"ladder: features of {backbone.spec.name} via the cache ({record['hits']} reused)")
                return tensors["train"]["activations"].flatten(1), tensors["train"]["labels"]
            except TailUnsupported as err:
                self._print(f"ladder: feature cache off for transferability ({err})")
        loader = DataLoader(train["train"], batch_size=bs, shuffle=False, collate_fn=collate)
        return penultimate_features(backbone, backbone.model, loader)

    # ---- outputs --------------------------------------------------------------------------------
    def _publish(self, source: Path) -> Path:
        """Copy the recommended rung's artifact to `output_dir/artifact` (temporary copy, then swap)."""
        dest = self.output_dir / "artifact"
        if self.state.is_main_process:
            tmp = self.output_dir / f".artifact.tmp-{uuid.uuid4().hex[:8]}"
            shutil.copytree(source, tmp)
            _swap_into_place(tmp, dest)
        self.state.wait_for_everyone()
        return dest

    def _prune(self, entries: list[RungEntry], scratch: RungEntry | None, recommended: str) -> None:
        """Drop the artifacts the `keep` option does not keep; the note then shows them as None."""
        if self.cfg.keep == "all":
            return
        for entry in [*entries, *([scratch] if scratch else [])]:
            chosen = Path(entry.artifact) if entry.artifact else None
            rung_dir = chosen.parent.parent if chosen else None
            if rung_dir is None:
                continue
            for artifact in rung_dir.glob("*/artifact"):
                drop = artifact != chosen or (self.cfg.keep == "recommended" and entry.id != recommended)
                if drop and self.state.is_main_process:
                    shutil.rmtree(artifact, ignore_errors=True)
            if self.cfg.keep == "recommended" and entry.id != recommended:
                entry.artifact = None
        self.state.wait_for_everyone()


def _mean_metrics(records: list[dict[str, Any]]) -> dict[str, float]:
    keys = [k for k, v in records[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: float(np.mean([r[k] for r in records])) for k in keys}


def _savez_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def run_ladder(config: RunConfig, *, run_all: bool | None = None, resume: bool = False) -> TransferNote:
    """Climb the ladder from a config (the Python API behind `peft-ladder ladder`)."""
    return Ladder(config, run_all=run_all, resume=resume).run()
