"""peft_ladder's messages go through Python logging, under the `peft_ladder` logger.

- Lines are written with `tqdm.write`, so an epoch line never lands inside a progress bar.
- Under several processes (`accelerate launch`), only the main process speaks, as `accelerate.logging` does.
- The libraries' own chatter around peft_ladder's calls (transformers' load reports of the head that was meant
  to be new, peft's notes) stays quiet unless the level is `debug` (`library_quiet`).

The package logger gets its handler the first time this module is imported (as transformers does), at level
INFO; `configure(level)` changes the level (`--log-level`, or PEFT_LADDER_LOG_LEVEL), and an application that
configures logging itself can call `configure(handler=False)` to let records propagate to its own handlers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator

from tqdm.auto import tqdm

LOGGER_NAME = "peft_ladder"
LEVELS = ("debug", "info", "warning", "error")
LEVEL_ENV = "PEFT_LADDER_LOG_LEVEL"
# Warnings that libraries give every time and that say nothing about the user's run.
_NOISE = (
    r"Failed to load the CUDA extension",  # peft BOFT on a machine without its CUDA build: the PyTorch path runs
    r"Setting boft_n_butterfly_factor to 1",
)


class _MainProcessOnly(logging.Filter):
    """One voice under `accelerate launch`: the launcher sets RANK for every process."""

    def filter(self, record: logging.LogRecord) -> bool:
        return int(os.environ.get("RANK", "0") or 0) == 0


class _TqdmHandler(logging.StreamHandler):
    """Writes above any progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # noqa: BLE001 - logging must never take the run down
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def _install() -> logging.Handler:
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        if isinstance(handler, _TqdmHandler):
            return handler
    # Resolved at emit time, so pytest's capsys and a notebook's redirected stdout both see the lines.
    handler = _TqdmHandler(_Stdout())
    handler.setFormatter(_Formatter("%(message)s"))
    handler.addFilter(_MainProcessOnly())
    logger.addHandler(handler)
    wanted = os.environ.get(LEVEL_ENV, "info").lower()
    logger.setLevel(getattr(logging, wanted.upper()) if wanted in LEVELS else logging.INFO)  # configure() says why
    logger.propagate = False
    return handler


class _Stdout:
    """sys.stdout as it is when a line is written (it is swapped by pytest, notebooks and redirect_stdout)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure(level: str | None = None, *, handler: bool = True) -> None:
    """Set peft_ladder's log level (debug, info, warning, error; default PEFT_LADDER_LOG_LEVEL, else info).

    Args:
        level: the level; `debug` also lets the libraries' load reports through (see `library_quiet`).
        handler: False removes peft_ladder's own handler and lets records propagate to the application's.

    Raises:
        ValueError: an unknown level.
    """
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(_level(level or os.environ.get(LEVEL_ENV, "info")))
    if not handler:
        logger.handlers = [h for h in logger.handlers if not isinstance(h, _TqdmHandler)]
        logger.propagate = True


@contextlib.contextmanager
def library_quiet() -> Iterator[None]:
    """Around peft_ladder's own calls into transformers and peft: their load reports (the new head's weights
    "missing", the pretraining head "unexpected": what peft_ladder asked for), their load / save progress bars
    and known noise warnings stay quiet, unless peft_ladder's level is debug. The libraries' settings are
    restored afterwards."""
    if logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG):
        yield
        return
    import datasets
    import transformers

    before, bars = transformers.logging.get_verbosity(), transformers.logging.is_progress_bar_enabled()
    data_bars = datasets.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    datasets.disable_progress_bars()  # "Map" while tokenizing
    try:
        with warnings.catch_warnings():
            for pattern in _NOISE:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        transformers.logging.set_verbosity(before)
        if bars:
            transformers.logging.enable_progress_bar()
        if data_bars:
            datasets.enable_progress_bars()


def _level(name: str) -> int:
    if name.lower() not in LEVELS:
        raise ValueError(f"log level {name!r} is not one of {', '.join(LEVELS)} (--log-level or {LEVEL_ENV}).")
    return getattr(logging, name.upper())


_install()
