"""`peft-ladder train|ladder|push|export ...`: the console script. More subcommands (bench) join here.

Each command imports its machinery inside its function, so `--help` does not load the training stack. A
failure the user can fix is one `error: ...` paragraph on stderr and exit status 2, never a traceback
(`--debug` or PEFT_LADDER_DEBUG=1 shows it); see `peft_ladder.errors`.
"""

from __future__ import annotations

import argparse
import sys

from peft_ladder.errors import EXIT_USER_ERROR, CommandParser, run_command

# command -> (module, function) for the commands whose parser lives with their entry point.
RECIPE_COMMANDS = {"train": ("peft_ladder.train", "main"), "ladder": ("peft_ladder.train", "ladder_main")}
COMMANDS = {
    "train": "train one rung: a recipe with `strategy`",
    "ladder": "climb the ladder and write the transfer note: a recipe with `ladder`",
    "push": "push a rung to a Hugging Face Hub model repo: its standalone export, with its own files in rung/",
    "export": "write a rung as a standalone folder that stock transformers / timm load",
    "recipe": "list the packaged recipes, show one, or list every recipe key (type, default, description)",
    "predict": "predict a split (csv, json, image folder, Hub dataset) with a run's rung or an export",
    "evaluate": "score a labelled split with the run's metrics and bootstrap intervals",
}
USAGE = "usage: peft-ladder [-h] [--version] [--debug] {" + ",".join(COMMANDS) + "} ..."


def main(argv: list[str] | None = None) -> int:
    """`peft-ladder [--version] [--debug] <command> ...`; `--debug` may also follow the command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0].startswith("-"):
        option = argv.pop(0)
        if option in ("-h", "--help"):
            print(_help())
            return 0
        if option == "--version":
            from peft_ladder import __version__

            print(f"peft-ladder {__version__}")
            return 0
        if option != "--debug":
            return _usage_error(f"unknown option {option!r}")
        debug = True
    if not argv:
        return _usage_error("name a command")
    command, rest = argv[0], [*argv[1:], *(["--debug"] if debug else [])]
    if command not in COMMANDS:
        return _usage_error(f"unknown command {command!r}")
    if command == "push":
        return push_main(rest)
    if command == "export":
        return export_main(rest)
    if command == "recipe":
        return recipe_main(rest)
    if command == "predict":
        from peft_ladder.inference.cli import predict_main

        return predict_main(rest)
    if command == "evaluate":
        from peft_ladder.inference.cli import evaluate_main

        return evaluate_main(rest)
    from importlib import import_module

    module, function = RECIPE_COMMANDS[command]
    return getattr(import_module(module), function)(rest)


def _help() -> str:
    width = max(map(len, COMMANDS))
    commands = "\n".join(f"  {name:<{width}}  {what}" for name, what in COMMANDS.items())
    return (
        f"{USAGE}\n\nClimb the adaptation ladder (linear probe, adapters, partial unfreeze, full fine-tuning) with "
        f"evidence.\n\ncommands:\n{commands}\n\noptions:\n"
        "  -h, --help  show this help and exit\n"
        "  --version   print the version and exit\n"
        "  --debug     show the full traceback of an error (also PEFT_LADDER_DEBUG=1)\n\n"
        "`peft-ladder <command> --help` lists a command's options."
    )


def _usage_error(what: str) -> int:
    print(f"error: {what}; the commands are {', '.join(COMMANDS)} (`peft-ladder --help` says more).", file=sys.stderr)
    return EXIT_USER_ERROR


def push_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="peft-ladder push",
        description="Push a run's recommended rung (or another with --rung) to a Hugging Face Hub model repo: its "
        "standalone export, which stock transformers / timm load, with the transfer note in its card, and the rung's "
        "own files in rung/ (peft_ladder.load_adapted reads them). The token comes from --token, HF_TOKEN or "
        "`hf auth login`.",
    )
    parser.add_argument("path", help="a train / ladder run folder (output_dir) or an artifact folder")
    parser.add_argument("--repo-id", required=True, help="user/name or org/name; created when missing")
    parser.add_argument("--rung", help="a ladder rung id (or scratch): push it, not the recommended one")
    parser.add_argument("--raw", action="store_true", help="push the rung's own files alone (adapter, delta or model)")
    parser.add_argument("--merged", action="store_true", help="push the standalone export alone, without rung/")
    parser.add_argument(
        "--private", action="store_true", help="create the repo private (an existing one keeps its own)"
    )
    parser.add_argument("--revision", help="branch to push to, created from main when missing (default: main)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the files, their sizes and the card; upload nothing"
    )
    parser.add_argument("--token", help="Hub token with write access (prefer HF_TOKEN: arguments show in `ps`)")
    parser.add_argument(
        "--base", help="the base checkpoint's folder for the export, when the artifact names one elsewhere"
    )
    parser.add_argument("--message", help="commit message")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def push_main(argv: list[str]) -> int:
    args = push_parser().parse_args(argv)
    return run_command(lambda: _push(args), debug=args.debug, secrets=[args.token])


def _push(args: argparse.Namespace) -> int:
    from peft_ladder.hub.push import push_to_hub

    result = push_to_hub(
        args.path,
        args.repo_id,
        rung=args.rung,
        raw=args.raw,
        merged=args.merged,
        private=args.private,
        revision=args.revision,
        token=args.token,
        dry_run=args.dry_run,
        base=args.base,
        commit_message=args.message,
    )
    print(result.summary())
    return 0


def export_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="peft-ladder export",
        description="Write a rung as a standalone folder that stock transformers / timm load without peft_ladder.",
    )
    parser.add_argument("path", help="a train / ladder run folder (output_dir) or an artifact folder")
    parser.add_argument("--out", required=True, help="the folder to write (refused when it exists, unless --overwrite)")
    parser.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fold adapters into the base (--no-merge keeps an adapter rung as a clean peft adapter folder)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--base", help="the base checkpoint's folder, when the artifact names one elsewhere")
    parser.add_argument("--token", help="Hub token for a private base (prefer HF_TOKEN)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def export_main(argv: list[str]) -> int:
    args = export_parser().parse_args(argv)
    return run_command(lambda: _export(args), debug=args.debug, secrets=[args.token])


def _export(args: argparse.Namespace) -> int:
    from peft_ladder.hub.export import export

    folder = export(args.path, args.out, merge=args.merge, overwrite=args.overwrite, base=args.base, token=args.token)
    print(folder)
    return 0


def recipe_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="peft-ladder recipe",
        description="The packaged recipes (`--recipe NAME` takes any of them) and the keys every recipe takes.",
    )
    sub = parser.add_subparsers(dest="action", required=True, parser_class=CommandParser, metavar="{list,show,keys}")
    sub.add_parser("list", help="the packaged recipes, by name")
    show = sub.add_parser("show", help="print a packaged recipe (copy it to start your own)")
    show.add_argument("name", help="e.g. tiny/minilm_ladder or minilm_ladder")
    keys = sub.add_parser("keys", help="every recipe key with its type, default and description")
    keys.add_argument("--strategy", help="the options of this strategy (strategy.<key>, or flat in a ladder rung)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def recipe_main(argv: list[str]) -> int:
    args = recipe_parser().parse_args(argv)
    return run_command(lambda: _recipe(args), debug=args.debug)


def _recipe(args: argparse.Namespace) -> int:
    from peft_ladder.recipe_files import find_recipe, recipe_names

    if args.action == "list":
        print("\n".join(recipe_names()))
    elif args.action == "show":
        path = find_recipe(args.name)
        if path is None:
            raise LookupError(f"no packaged recipe {args.name!r}; `peft-ladder recipe list` names them.")
        print(path.read_text(), end="")
    else:
        from peft_ladder.recipe_keys import format_keys, recipe_keys, strategy_keys
        from peft_ladder.strategies import list_strategies

        if args.strategy is None:
            print(format_keys(recipe_keys()))
            print(
                f"\nstrategy options depend on strategy.name ({', '.join(list_strategies())}): "
                "`peft-ladder recipe keys --strategy NAME`."
            )
        else:
            if args.strategy not in list_strategies():
                raise LookupError(
                    f"--strategy {args.strategy!r} is not a strategy; one of: {', '.join(list_strategies())}."
                )
            print(format_keys(strategy_keys(args.strategy)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
