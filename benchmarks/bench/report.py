"""The report: the results as Markdown (a header, each section's part, the targets table) and the JSON + Markdown
files. Everything is rendered from the results dict alone, so a saved JSON can be rendered again.

A run of some sections (`--sections`) is merged into the results file already there (`merge_results`): its
sections replace theirs, the others keep the numbers of the run that measured them, and `later_runs` says which
run measured what. Every ratio and target divides numbers of one section, so one file may hold sections of
several runs.
"""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

from benchmarks.bench import (
    engine_vs_raw,
    ladder_vs_full,
    ladder_vs_separate,
    lora_vs_trainer,
    precision_auto,
    probe,
    steps,
)
from benchmarks.bench.records import fmt_ratio, md_table
from benchmarks.bench.settings import OutputFiles

# Each module's sections (its keys in the results), in the report's order; each module has `add_ratios` and
# `markdown`. Sections 1-2 are measured together.
SECTION_MODULES: tuple[tuple[tuple[str, ...], ModuleType], ...] = (
    (("forward_floor", "step"), steps),
    (("probe_10_epochs",), probe),
    (("lora_vs_trainer",), lora_vs_trainer),
    (("ladder_vs_separate",), ladder_vs_separate),
    (("engine_vs_raw",), engine_vs_raw),
    ((ladder_vs_full.SECTION,), ladder_vs_full),
    ((precision_auto.SECTION,), precision_auto),
)
SECTION_NAMES: tuple[str, ...] = tuple(name for names, _ in SECTION_MODULES for name in names)
RUN_KEYS = ("created", "command", "git", "settings", "machine", "total_seconds")  # what a run says about itself


def recorded_sections(results: dict[str, Any]) -> list[str]:
    """The sections the results hold, in the report's order."""
    return [name for name in SECTION_NAMES if name in results]


def merge_results(earlier: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """`new` (a run of some sections) over `earlier` (a results file): `new`'s sections replace `earlier`'s.

    Each run keeps only the sections no later run replaced, and a run with none left drops out. The first run
    left gives the header (`created`, `command`, `git`, `settings`, `machine`, `total_seconds` and its
    `sections`), the others are `later_runs`, oldest first. Targets are not carried: they are built again.
    """
    ran = set(new["sections"])
    first = {"sections": earlier.get("sections", recorded_sections(earlier)), **{k: earlier[k] for k in RUN_KEYS}}
    runs = [first, *earlier.get("later_runs", [])]
    runs = [{**run, "sections": [s for s in run["sections"] if s not in ran]} for run in runs]
    runs = [run for run in runs if run["sections"]]
    runs.append({"sections": list(new["sections"]), **{k: new[k] for k in RUN_KEYS}})
    merged = {k: v for k, v in earlier.items() if k not in {*SECTION_NAMES, "targets", "later_runs"}}
    merged.update(runs[0])
    merged.update({name: earlier[name] for name in recorded_sections(earlier) if name not in ran})
    merged.update({name: new[name] for name in new["sections"]})
    if len(runs) > 1:
        merged["later_runs"] = runs[1:]
    return merged


def render_markdown(results: dict[str, Any]) -> str:
    m, g, s = results["machine"], results["git"], results["settings"]
    header_sections = results.get("sections", recorded_sections(results))
    out = [
        "# Ladder benchmark" + (" (--quick: tiny sizes, not a benchmark)" if s["quick"] else ""),
        "",
        f"- commit `{g['describe']}`, {results['created']}, `{results['command']}`",
        f"- {m['cpu_model']}, {m['cores']} cores, {m['platform']}; torch {m['torch']} on {m['device']}"
        + (f" ({m['gpu']})" if m["gpu"] else "")
        + f", {m['threads']} intra-op thread(s) (OMP_NUM_THREADS={m['omp_num_threads']})",
        f"- timings: `time.perf_counter`, median of {s['repeats']} timed repeats after {s['warmup']} warm-up steps "
        f"(forward and step); engine runs (sections 3-8) run in one process, each after a tiny warm-up run of the "
        f"same path, and are timed once (sections 4, 6 and 8: median of {s['lora_repeats']} alternating runs per side; "
        "section 7: its recipes' repeats)",
        f"- total benchmark wall time {results['total_seconds']:.0f}s"
        + (f" (sections {', '.join(header_sections)})" if results.get("later_runs") else ""),
    ]
    for run in results.get("later_runs", []):
        rm = run["machine"]
        out.append(
            f"- sections {', '.join(run['sections'])} from a later run: commit `{run['git']['describe']}`, "
            f"{run['created']}, `{run['command']}`, {run['total_seconds']:.0f}s; {rm['cpu_model']}, {rm['cores']} "
            f"cores; torch {rm['torch']} on {rm['device']}, {rm['threads']} intra-op thread(s)"
        )
    out.append("")
    for names, module in SECTION_MODULES:
        if all(name in results for name in names):  # a file of some sections, or saved before a section existed
            out += module.markdown(results)
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
