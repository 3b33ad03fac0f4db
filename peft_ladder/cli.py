"""`peft-ladder train|ladder ...`: the console script. More subcommands (push, bench) join here."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": ("peft_ladder.train", "main"), "ladder": ("peft_ladder.train", "ladder_main")}
    if not argv or argv[0] not in commands:
        print(f"usage: peft-ladder {{{','.join(commands)}}} --recipe RECIPE [key=value ...]", file=sys.stderr)
        return 2
    from importlib import import_module

    module, function = commands[argv[0]]
    return getattr(import_module(module), function)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
