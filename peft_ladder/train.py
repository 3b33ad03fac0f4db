"""Entry point: `accelerate launch peft_ladder/train.py --recipe recipes/<name>.yaml [key=value ...]`.

A recipe with a `strategy` trains that one rung; a recipe with a `ladder` section climbs the ladder
and writes the transfer note. Also `python -m peft_ladder.train ...`, `peft-ladder train ...` and
`peft-ladder ladder ...`. Absolute imports, so the file also runs as a script.

A mistake in what the user gave (recipe, override, flag, name, path, column) ends with one `error:` paragraph and
exit status 2; `--debug` (or PEFT_LADDER_DEBUG=1) shows the traceback instead (see `peft_ladder.errors`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`accelerate launch peft_ladder/train.py`): make the repo root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peft_ladder.errors import CommandParser, UserError, run_command  # noqa: E402


def build_parser(ladder: bool = False) -> argparse.ArgumentParser:
    # `peft-ladder train` when the console script runs it; else argparse's own (train.py).
    train_prog = "peft-ladder train" if Path(sys.argv[0]).name == "peft-ladder" else None
    parser = CommandParser(
        prog="peft-ladder ladder" if ladder else train_prog,
        description="Climb the adaptation ladder and write the transfer note."
        if ladder
        else "Train one rung (a `strategy` recipe) or climb the ladder (a `ladder` recipe).",
    )
    parser.add_argument(
        "--recipe",
        required=True,
        help="a YAML recipe, or a packaged recipe by name (`peft-ladder recipe list`), e.g. tiny/minilm_ladder",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="train: continue from the latest checkpoint in output_dir; ladder: reuse the trials that finished",
    )
    parser.add_argument(
        "--resume-from", metavar="PATH", help="train: continue from this checkpoint folder (output_dir/checkpoints/...)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run in output_dir (sets overwrite_output_dir=true; what it removes is printed)",
    )
    parser.add_argument(
        "--all", dest="run_all", action="store_true", help="ladder: run every rung even after the climb rule stops"
    )
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="peft_ladder's messages (default: PEFT_LADDER_LOG_LEVEL, else info); debug also shows the libraries' "
        "load reports",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also PEFT_LADDER_DEBUG=1)"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=2 strategy.r=4")
    return parser


def main(argv: list[str] | None = None, *, ladder: bool = False) -> int:
    """Run a recipe. With `ladder=True` (`peft-ladder ladder`) the recipe must have a `ladder` section.

    Returns:
        0, or 2 after one `error:` paragraph when the user's input is wrong (argparse exits 2 for bad flags).
    """
    # Intermixed: overrides may come before and after the flags (`--recipe r a=1 --all b=2`).
    args = build_parser(ladder).parse_intermixed_args(argv)
    try:
        return run_command(lambda: _run(args, ladder), debug=args.debug)
    finally:
        _end_process_group()


def _end_process_group() -> None:
    """Under `accelerate launch` with several processes: the engine keeps the group open for the ladder's next
    trial, so the command closes it (torch warns about a group left open at exit)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def _run(args: argparse.Namespace, ladder: bool) -> int:
    if args.resume and args.resume_from:
        raise UserError("pass --resume (the latest checkpoint) or --resume-from PATH (that checkpoint), not both.")
    from peft_ladder import logs  # here, not at the top: `--help` must not load the training stack
    from peft_ladder.config import load_config

    overrides = [*args.overrides, *(["overwrite_output_dir=true"] if args.overwrite else [])]
    config = load_config(args.recipe, overrides)
    logs.configure(args.log_level)
    if ladder and config.ladder is None:
        raise UserError(f"{args.recipe} has no `ladder` section; train it with `peft-ladder train`.")
    if config.ladder is not None:
        if config.strategy is not None:
            raise UserError(f"{args.recipe} sets both `strategy` and `ladder`; keep one.")
        if args.resume_from:
            raise UserError(
                f"--resume-from is for train recipes; {args.recipe} is a ladder: --resume reuses its finished trials."
            )
        from peft_ladder.ladder import run_ladder

        run_ladder(config, run_all=args.run_all or None, resume=args.resume)
        return 0
    if args.run_all:
        raise UserError(f"--all is for ladder recipes; {args.recipe} trains one strategy (it has no `ladder`).")
    if args.resume_from and not Path(args.resume_from).is_dir():
        raise UserError(
            f"--resume-from {args.resume_from}: no such checkpoint folder; pass one of "
            f"{Path(config.output_dir) / 'checkpoints'}/step_N, or --resume for the latest."
        )
    from peft_ladder.engine import train

    train(config, resume="latest" if args.resume else args.resume_from)
    return 0


def ladder_main(argv: list[str] | None = None) -> int:
    return main(argv, ladder=True)


if __name__ == "__main__":
    sys.exit(main())
