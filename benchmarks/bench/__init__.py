"""Ladder benchmark: what each rung costs, measured in one run, every claim a ratio of two numbers from that run.

    python benchmarks/ladder_bench.py [--quick] [--out DIR] [--models resnet18,vit_tiny,minilm] [--sections ...]
    python -m benchmarks.bench [--quick] [--out DIR] [--models ...] [--sections ...]      (the same)

A full run writes `DIR/ladder_bench.json` and `DIR/ladder_bench.md` (default DIR: benchmarks/results, the
files the README quotes); `--quick` writes `DIR/ladder_bench_quick.{json,md}` instead, so it never overwrites
them. Both print the table. Times are `time.perf_counter` seconds; step and forward times are the median of
several timed repeats after warm-up steps. Both files record the machine and the git commit (with "-dirty"
when the tree has changes). What each number means is in the docstring of its section's module:

1-2. `forward_floor`, `step`: `steps.py`         3. `probe_10_epochs`: `probe.py`
4. `lora_vs_trainer`: `lora_vs_trainer.py`       5. `ladder_vs_separate`: `ladder_vs_separate.py`
6. `engine_vs_raw`: `engine_vs_raw.py`           7. `ladder_vs_full`: `ladder_vs_full.py`
8. `precision_auto`: `precision_auto.py`

`--sections ladder_vs_full` (comma-separated names) runs only those sections and merges them into the results
file already in DIR: they replace their earlier numbers, the other sections stay, and `later_runs` in the JSON
(a line each in the Markdown header) says which run measured which sections. Section 7 climbs the README's
default job (about 25 min of ladder on 2 cores) and the same recipe on a third of its rows three times, each
against a full fine-tuning run: about an hour in all, most of a full run's time.

`targets` (`targets.py`) compares these ratios to the project's targets and says met or not met for each.
`--quick` runs the same code on tiny sizes (MiniLM cut to 2 layers, few repeats, MiniLM only, a ladder of
linear_probe, partial_unfreeze and scratch) for the test; its numbers are not benchmarks. To stay fast it runs a
model's five step measurements in one process (an interpreter start with torch, transformers and peft takes
~10 s on a 2-core VM), so its memory columns are cumulative; its section 7 climbs the one-layer smoke ladder on
a few rows. Engine runs (3-8) share one child process, each after a tiny warm-up run of the same path; they are
timed once (sections 4, 6, 7 and 8: the median of alternating runs of each side).

Layout: `settings` (profiles, paths), `child` (spawned processes), `device` and `measure` (torch, clocks and
memory in a child), `overrides` and `engine_runs` (what sections 3-8 share), one module per section,
`engine_sections` (3-8 in one child), `machine`, `targets`, `report`, `records` (ratios, tables) and `cli`.
The parent process never imports torch (see `child.run_child`); nothing here imports it at module level.
"""
