"""The ladder benchmark's command: `python benchmarks/ladder_bench.py [--quick] [--out DIR] [--models ...]
[--sections ...]`.

The code is the package `benchmarks/bench/` (its docstring says what is measured and where it is written);
this file keeps the command that the README, the tests and the recorded results name.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts benchmarks/ on sys.path, not the repository root that `benchmarks.bench` is
# imported from. Spawned children start with the parent's sys.path, so they find the package too.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
