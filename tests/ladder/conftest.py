"""Fixtures shared by the ladder tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from ladder.synthetic import LADDER_SEEDS, pretrained_source_backbone


@pytest.fixture(scope="module")
def source_backbones(tmp_path_factory) -> dict[int, Path]:
    """The source-pretrained tiny BERT of each ladder seed, built once for the module that asks."""
    root = tmp_path_factory.mktemp("sources")
    folders = {}
    for seed in LADDER_SEEDS:
        folder, accuracy = pretrained_source_backbone(root / f"backbone_{seed}", seed)
        assert accuracy >= 0.98
        folders[seed] = folder
    return folders
