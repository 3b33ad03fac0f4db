"""The report: the results as Markdown (a header, each section's part, the targets table) and the JSON + Markdown
files. Everything is rendered from the results dict alone, so a saved JSON can be rendered again."""

from __future__ import annotations

import json
from typing import Any

from benchmarks.bench import engine_vs_raw, ladder_vs_separate, lora_vs_trainer, probe, steps
from benchmarks.bench.records import fmt_ratio, md_table
from benchmarks.bench.settings import OutputFiles


def render_markdown(results: dict[str, Any]) -> str:
    m, g, s = results["machine"], results["git"], results["settings"]
    out = [
        "# Ladder benchmark" + (" (--quick: tiny sizes, not a benchmark)" if s["quick"] else ""),
        "",
        f"- commit `{g['describe']}`, {results['created']}, `{results['command']}`",
        f"- {m['cpu_model']}, {m['cores']} cores, {m['platform']}; torch {m['torch']} on {m['device']}"
        + (f" ({m['gpu']})" if m["gpu"] else "")
        + f", {m['threads']} intra-op thread(s) (OMP_NUM_THREADS={m['omp_num_threads']})",
        f"- timings: `time.perf_counter`, median of {s['repeats']} timed repeats after {s['warmup']} warm-up steps "
        f"(forward and step); engine runs (sections 3-6) run in one process, each after a tiny warm-up run of the "
        f"same path, and are timed once (sections 4 and 6: median of {s['lora_repeats']} alternating runs per side)",
        f"- total benchmark wall time {results['total_seconds']:.0f}s",
        "",
    ]
    out += steps.markdown(results)
    out += probe.markdown(results)
    out += lora_vs_trainer.markdown(results)
    out += ladder_vs_separate.markdown(results)
    if "engine_vs_raw" in results:  # results saved before section 6 existed render too
        out += engine_vs_raw.markdown(results)
    out += ["## Targets", ""]
    out += md_table(
        ["target", "measured", "needed", "met"],
        [
            [t["target"], fmt_ratio(t["ratio"]), f"{t['op']} {t['threshold']:g}x", "met" if t["met"] else "**not met**"]
            for t in results["targets"]
        ],
    )
    return "\n".join(out) + "\n"


def write_report(results: dict[str, Any], files: OutputFiles) -> str:
    """Write the JSON and the Markdown; returns the Markdown."""
    markdown = render_markdown(results)
    files.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    files.markdown.write_text(markdown)
    return markdown
