"""Entry point: `accelerate launch peft_ladder/train.py --recipe recipes/<name>.yaml [key=value ...]`.

A recipe with a `strategy` trains that one rung; a recipe with a `ladder` section climbs the ladder
and writes the transfer note. Also `python -m peft_ladder.train ...`, `peft-ladder train ...` and
`peft-ladder ladder ...`. Absolute imports, so the file also runs as a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`accelerate launch peft_ladder/train.py`): make the repo root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peft_ladder.config import ConfigError, load_config  # noqa: E402


def build_parser(ladder: bool = False) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peft-ladder ladder" if ladder else None,
        description="Climb the adaptation ladder and write the transfer note."
        if ladder
        else "Train one rung (a `strategy` recipe) or climb the ladder (a `ladder` recipe).",
    )
    parser.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/tiny/minilm_lora.yaml")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="continue from the latest checkpoint in output_dir (or a given checkpoint folder); "
        "for a ladder: reuse the trials that already finished",
    )
    parser.add_argument(
        "--all", dest="run_all", action="store_true", help="ladder: run every rung even after the climb rule stops"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=2 strategy.r=4")
    return parser


def main(argv: list[str] | None = None, *, ladder: bool = False) -> int:
    """Run a recipe. With `ladder=True` (`peft-ladder ladder`) the recipe must have a `ladder` section."""
    args = build_parser(ladder).parse_args(argv)
    try:
        config = load_config(args.recipe, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ladder and config.ladder is None:
        print(f"error: {args.recipe} has no `ladder` section; train it with `peft-ladder train`.", file=sys.stderr)
        return 2
    if config.ladder is not None:
        if config.strategy is not None:
            print(f"error: {args.recipe} sets both `strategy` and `ladder`; keep one.", file=sys.stderr)
            return 2
        from peft_ladder.ladder import run_ladder

        run_ladder(config, run_all=args.run_all or None, resume=args.resume is not None)
        return 0
    if args.run_all:
        print("error: --all is for ladder recipes.", file=sys.stderr)
        return 2
    from peft_ladder.engine import train

    train(config, resume=args.resume)
    return 0


def ladder_main(argv: list[str] | None = None) -> int:
    return main(argv, ladder=True)


if __name__ == "__main__":
    sys.exit(main())
