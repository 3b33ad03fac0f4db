"""Every metrics test runs offline: HF offline variables set, sockets refused and recorded, load_metric cold."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from peft_ladder.metrics import load_metric


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Offline env vars, refused (and recorded) sockets, a cold load_metric cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    attempts: list[object] = []

    def refuse(sock: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in tests")

    # evaluate swallows some network errors, so record attempts instead of relying
    # on an exception surfacing.
    monkeypatch.setattr(socket.socket, "connect", refuse)
    load_metric.cache_clear()
    yield attempts
    load_metric.cache_clear()
