"""Fixtures shared by the strategy tests."""

from __future__ import annotations

import pytest

from peft_ladder import list_strategies
from peft_ladder.strategies import registry


@pytest.fixture
def scratch_registry():
    """Let a test register throwaway strategies; the registry is restored exactly afterwards."""
    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    assert list_strategies() == sorted(before, key=lambda n: before[n].order)
