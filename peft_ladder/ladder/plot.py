"""The note's figure: validation metric against trainable parameters (with the scratch line), and
learning curves per rung."""

from __future__ import annotations

from pathlib import Path

from peft_ladder.ladder.note import TransferNote


def plot_note(note: TransferNote, path: Path) -> Path:
    """Write the PNG (to a temporary name first, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_params, ax_curve) = plt.subplots(1, 2, figsize=(11, 4.2))
    metric = note.metric
    for rung in note.rungs:
        m = rung.metric
        recommended = rung.id == note.decision.recommended
        ax_params.errorbar(
            max(rung.trainable.trainable, 1),
            m.estimate,
            yerr=[[m.estimate - m.low], [m.high - m.estimate]],
            fmt="*" if recommended else "o",
            markersize=13 if recommended else 7,
            capsize=4,
            label=f"{rung.id}{' (recommended)' if recommended else ''}",
        )
    if note.scratch is not None:
        s = note.scratch.metric
        ax_params.axhline(s.estimate, color="grey", linestyle="--", label=f"scratch {s.estimate:.3f}")
        ax_params.axhspan(s.low, s.high, color="grey", alpha=0.15)
    ax_params.set_xscale("log")
    ax_params.set_xlabel("trainable parameters")
    ax_params.set_ylabel(f"validation {metric}")
    ax_params.set_title(f"{int(round(100 * note.confidence))}% paired-bootstrap intervals")
    ax_params.legend(fontsize=8)

    for rung in [*note.rungs, *([note.scratch] if note.scratch else [])]:
        points = [(i + 1, rec[metric]) for i, rec in enumerate(rung.learning_curve) if metric in rec]
        if points:
            xs, ys = zip(*points)
            ax_curve.plot(xs, ys, marker="o", linestyle="--" if rung.role == "scratch" else "-", label=rung.id)
    ax_curve.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_curve.set_xlabel("epoch")
    ax_curve.set_ylabel(f"validation {metric}")
    ax_curve.set_title("learning curves (chosen LR, first seed)")
    ax_curve.legend(fontsize=8)
    fig.suptitle(f"{note.backbone['name']} on {note.data['dataset']}")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
