"""Entry point: `accelerate launch peft_ladder/train.py --recipe recipes/<name>.yaml [key=value ...]`.

Also `python -m peft_ladder.train ...` and `peft-ladder train ...`. Absolute imports, so the file
also runs as a script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`accelerate launch peft_ladder/train.py`): make the repo root importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from peft_ladder.config import ConfigError, load_config  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train one rung of the adaptation ladder.")
    parser.add_argument("--recipe", required=True, help="YAML recipe, e.g. recipes/tiny/minilm_lora.yaml")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="latest",
        default=None,
        help="continue from the latest checkpoint in output_dir (or a given checkpoint folder)",
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=2 strategy.r=4")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.recipe, args.overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from peft_ladder.engine import train

    train(config, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
