"""`peft-ladder predict` and `peft-ladder evaluate`: the console side of `peft_ladder.inference.loop`.

Only argparse at import time (`--help` loads no torch); a mistake the user can fix ends in one `error:` paragraph
and exit status 2 (`peft_ladder.errors.run_command`).
"""

from __future__ import annotations

import argparse
from collections import Counter

from peft_ladder.errors import CommandParser, run_command

MODEL_HELP = (
    "a train / ladder run folder (its recommended rung), an artifact folder, a standalone folder written by "
    "`peft-ladder export`, or a Hub repo id (user/name) of a pushed artifact or export"
)
DATA_HELP = (
    "a csv / tsv / json / jsonl / parquet file, an image folder (<split>/<class>/<image>, or images directly) or a "
    "Hub dataset id"
)


def predict_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="peft-ladder predict",
        description="Predict every row of a split with a run's recommended rung, any ladder rung or an export: one "
        "output row per input with its index, the predicted label and one probability per label.",
    )
    _model_and_data(parser)
    parser.add_argument(
        "--out",
        metavar="FILE",
        required=True,
        help="a .csv or .jsonl file (the extension chooses); refused when it exists",
    )
    _running(parser)
    return parser


def evaluate_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="peft-ladder evaluate",
        description="Score a labelled split with the metrics the run reported, each with a bootstrap interval "
        "over the rows; printed, and written as JSON with --out.",
    )
    _model_and_data(parser)
    parser.add_argument(
        "--label-column", metavar="NAME", help="default: the column training read, else label, labels, class, ..."
    )
    parser.add_argument("--out", metavar="FILE", help="a .json file for the report; refused when it exists")
    parser.add_argument("--metrics", nargs="+", metavar="NAME", help="default: the run's (accuracy f1_macro)")
    parser.add_argument("--confidence", metavar="P", type=float, help="of the intervals; default: the run's (0.95)")
    parser.add_argument(
        "--bootstrap-samples", metavar="N", type=int, help="resamples of the rows; default: the run's (2000)"
    )
    _running(parser)
    return parser


def predict_main(argv: list[str]) -> int:
    args = predict_parser().parse_args(argv)
    return run_command(lambda: _predict(args), debug=args.debug, secrets=[args.token])


def evaluate_main(argv: list[str]) -> int:
    args = evaluate_parser().parse_args(argv)
    return run_command(lambda: _evaluate(args), debug=args.debug, secrets=[args.token])


def _model_and_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("data", help=DATA_HELP)
    parser.add_argument("--rung", metavar="ID", help="with a ladder run folder: this rung's own artifact (or scratch)")
    parser.add_argument("--split", metavar="NAME", help="the split to read; default: the only one, else test")
    parser.add_argument(
        "--text-column", metavar="NAME", help="default: the column training read, else text, sentence, ..."
    )
    parser.add_argument(
        "--image-column", metavar="NAME", help="default: the column training read, else image, img, ..."
    )
    parser.add_argument("--data-config", metavar="NAME", help="a Hub dataset's configuration (datasets' name)")
    parser.add_argument("--data-revision", metavar="REV", help="a Hub dataset's branch, tag or commit")
    parser.add_argument("--encoding", metavar="ENC", default="utf-8", help="a csv file's text encoding (default utf-8)")


def _running(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", metavar="N", type=int, default=32, help="rows per forward pass (default 32)")
    parser.add_argument(
        "--max-length", metavar="N", type=int, help="tokenizer max length; default: the run's, at most 512"
    )
    parser.add_argument(
        "--mixed-precision", choices=("no", "fp16", "bf16"), default="no", help="Accelerate's (fp16 needs a GPU)"
    )
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is present")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run modelling code shipped with the model (some exports)"
    )
    parser.add_argument("--revision", metavar="REV", help="a Hub model repo's branch, tag or commit")
    parser.add_argument(
        "--token", metavar="TOKEN", help="Hub token for a private repo (prefer HF_TOKEN: arguments show in `ps`)"
    )
    parser.add_argument(
        "--base", metavar="FOLDER", help="the base checkpoint's folder, when the artifact names one elsewhere"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def _shared(args: argparse.Namespace) -> dict:
    """The options `predict` and `evaluate` share, as their keyword arguments."""
    return dict(
        out=args.out,
        overwrite=args.overwrite,
        split=args.split,
        text_column=args.text_column,
        image_column=args.image_column,
        data_config=args.data_config,
        data_revision=args.data_revision,
        encoding=args.encoding,
        batch_size=args.batch_size,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
        progress=not args.no_progress,
        rung=args.rung,
        trust_remote_code=args.trust_remote_code,
        revision=args.revision,
        token=args.token,
        base=args.base,
        max_length=args.max_length,
    )


def _predict(args: argparse.Namespace) -> int:
    from peft_ladder.inference.loop import predict

    predictions = predict(args.model, args.data, **_shared(args))
    print(f"wrote {len(predictions.probabilities)} predictions to {predictions.out} ({_counts(predictions)})")
    return 0


def _counts(predictions) -> str:
    """How often each label was predicted (per row; per label of a row for multi-label; per word for a tagger),
    or a regression's range."""
    if predictions.task == "regression":
        values = predictions.probabilities
        return f"mean {values.mean():.4g}, from {values.min():.4g} to {values.max():.4g}"
    many = predictions.task in ("multi_label", "token_classification")
    counts = Counter(name for row in predictions.labels for name in row) if many else Counter(predictions.labels)
    per = " words" if predictions.task == "token_classification" else ""
    return ", ".join(f"{name} {counts[name]}" for name in predictions.label_names if counts[name]) + per


def _evaluate(args: argparse.Namespace) -> int:
    from peft_ladder.inference.loop import evaluate

    report = evaluate(
        args.model,
        args.data,
        label_column=args.label_column,
        metrics=args.metrics,
        confidence=args.confidence,
        bootstrap_samples=args.bootstrap_samples,
        **_shared(args),
    )
    print(report.summary())
    if report.out is not None:
        print(f"wrote {report.out}")
    return 0
