"""The note's figure: the Pareto view (decision metric against trainable parameters, wall time and peak
memory, with the scratch and cheap-baseline bands), then the learning curves, the depth curve and each
rung's LR search."""

from __future__ import annotations

from pathlib import Path

from peft_ladder.io import replace_atomic
from peft_ladder.ladder.note import RungEntry, TransferNote


def _cost(rung: RungEntry, axis: str) -> float | None:
    if axis == "params":
        return max(rung.trainable.trainable, 1)
    if axis == "seconds":
        return max(rung.train_seconds / max(len(rung.seeds), 1), 1e-3)
    return rung.peak_memory.get("peak_mb") if rung.peak_memory else None


def plot_note(note: TransferNote, path: Path) -> Path:
    """Write the PNG (to a temporary name first, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator, NullFormatter

    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    metric = note.metric
    pareto = [
        ("params", "trainable parameters", True),
        ("seconds", "training seconds per run", True),
        ("memory", "peak memory (MB)", False),
    ]
    for ax, (axis, label, log) in zip(axes[0], pareto):
        for rung in note.rungs:
            x = _cost(rung, axis)
            if x is None:
                continue
            m = rung.metric
            recommended = rung.id == note.decision.recommended
            ax.errorbar(
                x,
                m.estimate,
                yerr=[[m.estimate - m.low], [m.high - m.estimate]],
                fmt="*" if recommended else "o",
                markersize=13 if recommended else 7,
                capsize=4,
                label=f"{rung.id}{' (recommended)' if recommended else ''}",
            )
        for band, name, color in (
            (note.scratch.metric if note.scratch else None, "scratch", "grey"),
            (note.baseline.metric if note.baseline else None, note.baseline.name if note.baseline else "", "tab:brown"),
        ):
            if band is not None:
                ax.axhline(band.estimate, color=color, linestyle="--", label=f"{name} {band.estimate:.3f}")
                ax.axhspan(band.low, band.high, color=color, alpha=0.12)
        if log:
            ax.set_xscale("log")
            # Minor ticks unlabelled: on a span under a decade matplotlib labels each one, and they overlap.
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel(f"decision {metric}")
    axes[0][0].set_title(f"{int(round(100 * note.confidence))}% intervals on the decision rows")
    axes[0][0].legend(fontsize=7)

    ax = axes[1][0]
    for rung in [*note.rungs, *([note.scratch] if note.scratch else [])]:
        points = [(rec.get("main_step", i), rec[metric]) for i, rec in enumerate(rung.learning_curve) if metric in rec]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o", linestyle="--" if rung.role == "scratch" else "-", label=rung.id)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step (main phase; 0: before any update)")
    ax.set_ylabel(f"selection {metric}")
    ax.set_title("learning curves (chosen LR, first seed)")
    ax.legend(fontsize=7)

    ax = axes[1][1]
    if note.depth_curve is not None:
        points = note.depth_curve.points
        ax.errorbar(
            [p.block for p in points],
            [p.score(note.depth_curve.ranked_by) for p in points],
            yerr=[p.score(f"{note.depth_curve.ranked_by}_se") for p in points],
            marker="o",
            capsize=3,
        )
        ax.axvline(note.depth_curve.peak, color="tab:green", linestyle=":", label="peak")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7)
    ax.set_xlabel("block")
    ranked_by = note.depth_curve.ranked_by if note.depth_curve is not None else "accuracy"
    ax.set_ylabel(f"probe CV {ranked_by.replace('_', '-')} (training folds)")
    ax.set_title("depth curve: frozen features per block")

    ax = axes[1][2]
    for rung in [*note.rungs, *([note.scratch] if note.scratch else [])]:
        tried = sorted((t.lr, t.metric) for t in rung.lr_search if t.metric is not None)
        if len(tried) > 1:
            xs, ys = zip(*tried)
            ax.plot(xs, ys, marker="o", label=rung.id)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"selection {metric}")
    ax.set_title("LR search (selection rows)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)

    fig.suptitle(f"{note.backbone['name']} on {note.data['dataset']}")
    fig.tight_layout()
    replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return path
