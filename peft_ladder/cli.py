"""`peft-ladder train|ladder|push|export ...`: the console script. More subcommands (bench) join here.

Each command imports its machinery inside its function, so `--help` does not load the training stack. A
failure the user can fix is one `error: ...` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

# command -> (module, function) for the commands whose parser lives with their entry point.
RECIPE_COMMANDS = {"train": ("peft_ladder.train", "main"), "ladder": ("peft_ladder.train", "ladder_main")}
COMMANDS = [*RECIPE_COMMANDS, "push", "export"]
USAGE = f"usage: peft-ladder {{{','.join(COMMANDS)}}} ... (peft-ladder <command> --help for its options)"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "push":
        return push_main(rest)
    if command == "export":
        return export_main(rest)
    from importlib import import_module

    from peft_ladder.hub.push import PushError  # the recipe's push_to_hub fails with it after the run

    module, function = RECIPE_COMMANDS[command]
    try:
        return getattr(import_module(module), function)(rest)
    except PushError as err:
        return _error(err)


def push_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peft-ladder push",
        description="Push a run's published artifact (or one ladder rung's, or its merged export) to a Hugging "
        "Face Hub model repo. The token comes from --token, HF_TOKEN or `hf auth login`.",
    )
    parser.add_argument("path", help="a train / ladder run folder (output_dir) or an artifact folder")
    parser.add_argument("--repo-id", required=True, help="user/name or org/name; created when missing")
    parser.add_argument("--rung", help="a ladder rung id (or scratch): push its own artifact, not the recommended one")
    parser.add_argument("--merged", action="store_true", help="push the standalone merged export (stock libraries)")
    parser.add_argument(
        "--private", action="store_true", help="create the repo private (an existing one keeps its own)"
    )
    parser.add_argument("--revision", help="branch to push to, created from main when missing (default: main)")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the files, their sizes and the card; upload nothing"
    )
    parser.add_argument("--token", help="Hub token with write access (prefer HF_TOKEN: arguments show in `ps`)")
    parser.add_argument("--base", help="--merged: the base checkpoint's folder, when the artifact names one elsewhere")
    parser.add_argument("--message", help="commit message")
    return parser


def push_main(argv: list[str]) -> int:
    args = push_parser().parse_args(argv)
    from peft_ladder.hub.push import PushError, push_to_hub

    try:
        result = push_to_hub(
            args.path,
            args.repo_id,
            rung=args.rung,
            merged=args.merged,
            private=args.private,
            revision=args.revision,
            token=args.token,
            dry_run=args.dry_run,
            base=args.base,
            commit_message=args.message,
        )
    except PushError as err:
        return _error(err)
    print(result.summary())
    return 0


def export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    return parser


def export_main(argv: list[str]) -> int:
    args = export_parser().parse_args(argv)
    from peft_ladder.hub.export import export

    try:
        folder = export(
            args.path, args.out, merge=args.merge, overwrite=args.overwrite, base=args.base, token=args.token
        )
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        return _error(err, token=args.token)
    print(folder)
    return 0


def _error(err: BaseException, token: str | None = None) -> int:
    message = " ".join(str(err).split())
    if token:
        message = message.replace(token, "<token>")
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
