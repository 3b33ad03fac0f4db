"""peft_ladder's messages: Python logging with a level, one voice under several processes, written above progress
bars, and the libraries' load chatter quiet around our own calls unless the level is debug."""

from __future__ import annotations

import logging

import pytest
import transformers

from peft_ladder import logs

engine_logger = logging.getLogger("peft_ladder.engine")


@pytest.fixture(autouse=True)
def _restore_level():
    yield
    logs.configure("info")


def test_the_level_decides_what_is_printed(capsys):
    logs.configure("info")
    engine_logger.info("epoch 1: loss=0.5")
    logs.configure("warning")
    engine_logger.info("hidden at warning")
    engine_logger.warning("shown at warning")
    out = capsys.readouterr().out
    assert "epoch 1: loss=0.5" in out and "hidden at warning" not in out and "warning: shown at warning" in out


def test_only_the_main_process_speaks(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    engine_logger.info("from rank 1")
    monkeypatch.setenv("RANK", "0")
    engine_logger.info("from rank 0")
    out = capsys.readouterr().out
    assert "from rank 0" in out and "from rank 1" not in out


def test_an_unknown_level_is_refused():
    with pytest.raises(ValueError, match="PEFT_LADDER_LOG_LEVEL"):
        logs.configure("chatty")


def test_library_chatter_is_quiet_inside_and_restored_after():
    transformers.logging.set_verbosity_warning()
    with logs.library_quiet():
        assert transformers.logging.get_verbosity() == logging.ERROR
        assert not transformers.logging.is_progress_bar_enabled()
    assert transformers.logging.get_verbosity() == logging.WARNING
    logs.configure("debug")  # debug: the libraries speak
    with logs.library_quiet():
        assert transformers.logging.get_verbosity() == logging.WARNING
