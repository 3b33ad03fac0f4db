"""Benchmarks of peft_ladder; a package so that `benchmarks.bench` imports from the repository root."""
