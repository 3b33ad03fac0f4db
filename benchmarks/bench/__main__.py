"""`python -m benchmarks.bench [--quick] [--out DIR] [--models ...]`: the same as `benchmarks/ladder_bench.py`."""

import sys

from benchmarks.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks.bench"))
