"""Fixtures for the push tests: the fake Hub (`fake_hub.py`, which stands in for huggingface.co because this
machine cannot reach it), this process pointed at it, and one tiny ladder whose base checkpoint lives on it as
`org/tiny-bert`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub
from hub_env import BASE_REPO, LADDER_REPO, LadderRun, point_at


@pytest.fixture(scope="session")
def fake_hub() -> Iterator[FakeHub]:
    hub = FakeHub().start()
    yield hub
    hub.stop()


@pytest.fixture
def hub(fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHub:
    point_at(fake_hub, monkeypatch, tmp_path / "hf_home")
    return fake_hub


@pytest.fixture(scope="session")
def ladder_run(fake_hub: FakeHub, tmp_path_factory: pytest.TempPathFactory) -> LadderRun:
    """A two-rung ladder (linear_probe, lora; one LR, one seed, 2 epochs, ~6 s) on a tiny BERT that was pushed to
    the fake Hub as `org/tiny-bert` and loaded from its cache snapshot, so the artifacts name their base by that
    Hub id (and still carry the local-only dotfile with the snapshot's path). Pooling is the BERT pooler, so the
    lora rung is exactly `BertForSequenceClassification` plus the adapter: stock peft reproduces it. The recipe
    has `push_to_hub: true`: the ladder pushes its published artifact to `LADDER_REPO` when it finishes."""
    import csv

    from huggingface_hub import HfApi, snapshot_download
    from ladder.synthetic import pretrained_source_backbone, scenario_close

    from peft_ladder.ladder import Ladder

    root = tmp_path_factory.mktemp("hub_ladder")
    folder, _ = pretrained_source_backbone(root / "tiny-bert", seed=0)
    with pytest.MonkeyPatch.context() as mp:
        point_at(fake_hub, mp, root / "hf_home")
        api = HfApi(token=FakeHub.TOKEN)
        api.create_repo(BASE_REPO, exist_ok=True)
        api.upload_folder(repo_id=BASE_REPO, folder_path=str(folder))
        snapshot = Path(snapshot_download(BASE_REPO, token=FakeHub.TOKEN))
        scenario = scenario_close(root, seed=0, source=snapshot)
        out = root / "run"
        mp.setenv("HF_TOKEN", FakeHub.TOKEN)
        Ladder(_ladder_config(scenario, snapshot, out)).run()
    with open(scenario.validation_csv) as f:
        texts = [row["text"] for row, _ in zip(csv.DictReader(f), range(6))]
    return LadderRun(out, snapshot, texts)


def _ladder_config(scenario, snapshot: Path, out: Path):
    from peft_ladder.config import load_config

    return load_config(
        None,
        [],
        backbone={"name": str(snapshot), "pooling": "pooler"},
        data={
            "dataset": "csv",
            "data_files": {"train": str(scenario.train_csv), "validation": str(scenario.validation_csv)},
            "max_length": 16,
        },
        train={"epochs": 2, "batch_size": 16, "head_lr": 3e-2, "warmup_ratio": 0.0, "seed": 0},
        ladder={
            "rungs": [{"name": "linear_probe"}, {"name": "lora", "lr": 2e-3}],
            "lr_search": {"multipliers": [1.0]},
            "max_seeds": 1,
            "scratch": False,
            "baseline": False,
            "bootstrap_samples": 200,
        },
        metrics=["accuracy"],
        checkpoint={"each_epoch": False},
        log_with="none",
        output_dir=str(out),
        push_to_hub=True,
        hub_model_id=LADDER_REPO,
    )
