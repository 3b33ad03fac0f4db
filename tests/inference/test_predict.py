"""`predict` / `evaluate` and their commands, on tiny rungs of a text family (transformers BERT) and two image
families (timm ViT, transformers ViT): probabilities are the softmax of `load_adapted`'s logits under the labels'
names, an export predicts what its artifact does, run folders and `--rung` find the right artifact, evaluate's
numbers are the hand-computed ones, and every user mistake is one `error:` paragraph with exit status 2."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import make_color_images

from peft_ladder import apply_strategy, evaluate, load_adapted, load_backbone, predict, save_adapted
from peft_ladder.cli import main
from peft_ladder.hub.export import export
from peft_ladder.results import SplitResult

LABELS = ["red", "green", "blue"]  # the image folder's classes are red and green
WORDS = "the a function returns list of items when it is called with".split()
TEXTS = [" ".join(WORDS[: 1 + i % len(WORDS)]) for i in range(10)]
TEXT_LABELS = ["red", "green", "blue", "green", "red"] * 2


@dataclass(frozen=True)
class Rung:
    """A tiny rung: backbone case, strategy, pooling (text), the output format it is predicted to."""

    id: str
    case: str
    strategy: str
    out: str
    pooling: str | None = None

    @property
    def modality(self) -> str:
        return "text" if self.case.startswith("hf_bert") else "image"


RUNGS = [
    Rung("bert-lora", "hf_bert", "lora", "csv", pooling="pooler"),  # a stock transformers export
    Rung("bert-mean", "hf_bert", "partial_unfreeze", "jsonl", pooling="mean"),  # an export with remote code
    Rung("timm-vit", "timm_vit", "linear_probe", "jsonl"),
    Rung("hf-vit", "hf_vit", "full", "csv"),
]
BY_ID = {r.id: r for r in RUNGS}


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Trained-looking weights: a fresh LoRA adds nothing and a fresh head says little."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict_data")
    text = root / "texts.csv"
    with open(text, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "label"])
        writer.writerows([(f"r{i}", t, label) for i, (t, label) in enumerate(zip(TEXTS, TEXT_LABELS))])
    images = make_color_images(root / "images", per_class=4)  # images/train/{red,green}/*.png
    return {"text": text, "image": images}


@pytest.fixture(scope="module")
def artifacts(tiny_dirs, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("predict_artifacts")
    made = {}
    for i, rung in enumerate(RUNGS):
        options = {"pooling": rung.pooling} if rung.pooling else {}
        backbone = load_backbone(str(tiny_dirs[rung.case]), label_names=LABELS, **options)
        adapted = apply_strategy(backbone, rung.strategy)
        _perturb(adapted.model, seed=i)
        made[rung.id] = Path(save_adapted(adapted, root / rung.id))
    return made


def _expected_probabilities(artifact: Path, rung: Rung, predictions) -> np.ndarray:
    """By hand: each row on its own through `load_adapted`'s model, softmax of its logits."""
    adapted = load_adapted(artifact)
    adapted.model.eval()
    if rung.modality == "text":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(artifact))
        batches = [dict(tokenizer(t, truncation=True, max_length=512, return_tensors="pt")) for t in TEXTS]
    else:
        from timm.data import create_transform

        config = adapted.backbone.data_config
        keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        transform = create_transform(**{k: config[k] for k in keys if k in config}, is_training=False)
        images = [Image.open(p).convert("RGB") for p in predictions.paths]
        batches = [{"pixel_values": transform(image)[None]} for image in images]
    with torch.no_grad():
        logits = torch.cat([adapted.logits(b) for b in batches])
    return torch.softmax(logits, -1).numpy()


def _read(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("rung_id", ["bert-lora", "timm-vit", "hf-vit"])
def test_predictions_are_the_softmax_of_the_artifacts_logits_under_label_names(artifacts, data, tmp_path, rung_id):
    rung = BY_ID[rung_id]
    out = tmp_path / f"predictions.{rung.out}"
    predictions = predict(artifacts[rung_id], data[rung.modality], out=out, batch_size=3, progress=False)
    expected = _expected_probabilities(artifacts[rung_id], rung, predictions)
    assert predictions.probabilities.shape == (len(expected), len(LABELS))
    np.testing.assert_allclose(predictions.probabilities, expected, atol=1e-5)
    assert predictions.labels == [LABELS[i] for i in expected.argmax(-1)]
    # The file: one row per input in order, the label's name and one probability per label name.
    written = _read(out)
    assert [int(r["row"]) for r in written] == list(range(len(expected)))
    assert [r["label"] for r in written] == predictions.labels
    probs = np.array([[float(r[f"prob_{name}"]) for name in LABELS] for r in written])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    if rung.modality == "image":
        assert all(Path(r["path"]).is_file() for r in written)


@pytest.mark.parametrize("rung_id", ["bert-lora", "bert-mean", "timm-vit", "hf-vit"])
def test_an_export_predicts_what_its_artifact_predicts(artifacts, data, tmp_path, rung_id):
    rung = BY_ID[rung_id]
    folder = export(artifacts[rung_id], tmp_path / "export")
    expected = predict(artifacts[rung_id], data[rung.modality], progress=False)
    got = predict(folder, data[rung.modality], progress=False, trust_remote_code=True)
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-5)
    assert got.label_names == LABELS


def test_a_run_folder_predicts_its_recommended_rung_and_rung_names_another(artifacts, data, tmp_path):
    run = tmp_path / "ladder"
    for rung_id in ("bert-lora", "bert-mean"):
        shutil.copytree(artifacts[rung_id], run / "rungs" / rung_id / "artifact")
    shutil.copytree(artifacts["bert-mean"], run / "artifact")  # the recommended rung, as the ladder publishes it
    note = {"rungs": [{"id": i, "artifact": str(run / "rungs" / i / "artifact")} for i in ("bert-lora", "bert-mean")]}
    (run / "transfer_note.json").write_text(json.dumps(note))

    recommended = predict(run, data["text"], progress=False).probabilities
    np.testing.assert_allclose(recommended, predict(artifacts["bert-mean"], data["text"], progress=False).probabilities)
    other = predict(run, data["text"], rung="bert-lora", progress=False).probabilities
    np.testing.assert_allclose(other, predict(artifacts["bert-lora"], data["text"], progress=False).probabilities)
    assert not np.allclose(recommended, other)


@pytest.mark.parametrize("rung_id", ["bert-lora", "timm-vit"])
def test_evaluate_scores_as_by_hand_with_an_interval_around_it(artifacts, data, tmp_path, rung_id):
    rung = BY_ID[rung_id]
    source = data[rung.modality]
    predictions = predict(artifacts[rung_id], source, progress=False)
    if rung.modality == "text":
        truth = TEXT_LABELS
    else:  # the image folder's class is the file's folder
        truth = [Path(p).parent.name for p in predictions.paths]
    accuracy = float(np.mean([p == t for p, t in zip(predictions.labels, truth)]))

    out = tmp_path / "evaluation.json"
    report = evaluate(artifacts[rung_id], source, out=out, progress=False, bootstrap_samples=500)
    assert report.n == len(truth)
    assert report.metrics["accuracy"] == pytest.approx(accuracy)
    interval = report.intervals["accuracy"]
    assert interval.low <= accuracy <= interval.high and interval.n == len(truth)
    assert set(report.metrics) == {"accuracy", "f1_macro"}  # an artifact without a run config: the defaults
    written = json.loads(out.read_text())
    assert written["metrics"] == pytest.approx(report.metrics)
    assert written["intervals"]["accuracy"]["low"] == pytest.approx(interval.low)


def test_the_run_config_names_the_columns_and_options_override_it(tiny_dirs, data, tmp_path):
    renamed = tmp_path / "renamed.csv"
    with open(data["text"], newline="") as f:
        rows = list(csv.DictReader(f))
    with open(renamed, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["body", "gold"])
        writer.writerows([(r["text"], r["label"]) for r in rows])
    backbone = load_backbone(str(tiny_dirs["hf_bert"]), label_names=LABELS, pooling="mean")
    run_config = {"data": {"text_column": "body", "label_column": "gold", "max_length": 16}, "metrics": ["accuracy"]}
    measured = SplitResult(loss=0.5, n=8, metrics={"accuracy": 0.75}).model_dump()
    metrics = {"splits": {"validation": measured}}  # what the run measured, as the engine records it
    extra = {"run_config": run_config, "metrics": metrics}
    artifact = save_adapted(apply_strategy(backbone, "linear_probe"), tmp_path / "a", extra=extra)

    report = evaluate(artifact, renamed, progress=False, bootstrap_samples=200)
    assert set(report.metrics) == {"accuracy"} and report.n == len(rows)
    assert report.recorded == {"validation": {"accuracy": 0.75}}
    via_options = predict(artifact, data["text"], text_column="text", progress=False)
    np.testing.assert_allclose(predict(artifact, renamed, progress=False).probabilities, via_options.probabilities)


def test_the_commands_write_predictions_and_a_report(artifacts, data, tmp_path, capsys):
    out = tmp_path / "p.jsonl"
    assert main(["predict", str(artifacts["timm-vit"]), str(data["image"]), "--out", str(out), "--no-progress"]) == 0
    assert len(_read(out)) == 8
    report = tmp_path / "r.json"
    argv = ["evaluate", str(artifacts["bert-lora"]), str(data["text"]), "--out", str(report), "--no-progress"]
    assert main([*argv, "--bootstrap-samples", "200", "--batch-size", "4"]) == 0
    assert json.loads(report.read_text())["n"] == len(TEXTS)
    assert "accuracy" in capsys.readouterr().out


def _bad_cases(artifacts: dict[str, Path], data: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str]]:
    """case -> (argv, what the message must name)."""
    bert, text = str(artifacts["bert-lora"]), str(data["text"])
    exists = tmp / "exists.csv"
    exists.write_text("row\n")
    unknown = tmp / "unknown.csv"
    unknown.write_text("text,label\nthe a,red\nthe a b,purple\n")
    run = tmp / "ladder"
    (run / "artifact").mkdir(parents=True)
    (run / "transfer_note.json").write_text(json.dumps({"rungs": [{"id": "lora", "artifact": None}]}))
    remote = export(artifacts["bert-mean"], tmp / "remote_export")
    out = str(tmp / "p.csv")
    return {
        "missing data file": (["predict", bert, str(tmp / "nope.csv"), "--out", out], "nope.csv"),
        "missing model folder": (["predict", str(tmp / "no_run"), text, "--out", out], "no_run"),
        "missing column": (["predict", bert, text, "--text-column", "body", "--out", out], "body"),
        "unknown rung": (["predict", str(run), text, "--rung", "full", "--out", out], "full"),
        "no trust_remote_code": (["predict", str(remote), text, "--out", out], "--trust-remote-code"),
        "output exists": (["predict", bert, text, "--out", str(exists)], "exists.csv"),
        "bad extension": (["predict", bert, text, "--out", str(tmp / "p.txt")], "p.txt"),
        "output under a file": (["predict", bert, text, "--out", str(exists / "p.csv")], "exists.csv"),
        "unknown split": (["predict", bert, text, "--split", "dev", "--out", out], "dev"),
        "unknown labels": (["evaluate", bert, str(unknown)], "purple"),
        "unknown option": (["predict", bert, text, "--out", out, "--colour"], "--colour"),
    }


def test_every_user_mistake_is_one_error_paragraph_and_status_2(artifacts, data, tmp_path, capsys):
    cases = _bad_cases(artifacts, data, tmp_path)
    capsys.readouterr()  # what making the cases printed
    for case, (argv, named) in cases.items():
        try:
            status = main([*argv, "--no-progress"] if "--colour" not in argv else argv)
        except SystemExit as done:  # argparse's own refusals exit
            status = done.code
        err = capsys.readouterr().err.strip()
        assert status == 2, (case, err)
        assert "Traceback" not in err, (case, err)
        last = err.splitlines()[-1]  # libraries may have logged before; the command ends with its error
        assert last.startswith("error:") and named in last, (case, err)
    assert not (tmp_path / "p.csv").exists()  # nothing half-written


def test_unknown_labels_name_their_rows(artifacts, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nthe,red\nthe a,purple\nthe a b,green\nthe a b c,purple\n")
    with pytest.raises(ValueError, match="purple") as raised:
        evaluate(artifacts["bert-lora"], bad, progress=False)
    assert "1, 3" in str(raised.value)  # the rows that hold it


def test_help_loads_no_training_stack():
    code = (
        "import sys\nfrom peft_ladder.cli import main\n"
        "for command in ('predict', 'evaluate'):\n"
        "    try:\n        main([command, '--help'])\n    except SystemExit as done:\n        assert done.code == 0\n"
        "print(sorted(m for m in ('torch', 'transformers', 'timm', 'datasets') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_cli_summary_counts_labels_of_every_task():
    """Per row (single-label), per label of a row (multi-label), per word (a tagger), or a regression's range."""
    import numpy as np

    from peft_ladder.inference.cli import _counts
    from peft_ladder.inference.results import Predictions
    from peft_ladder.tasks import IGNORE

    assert _counts(Predictions(["a", "b"], np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]))) == "a 2, b 1"
    multi = Predictions(["a", "b"], np.array([[0.9, 0.2], [0.7, 0.8]]), task="multi_label")
    assert _counts(multi) == "a 2, b 1"
    tags = Predictions(["B-X", "O"], np.array([[0, 1, 1], [1, IGNORE, IGNORE]]), task="token_classification")
    assert _counts(tags) == "B-X 1, O 3 words"
    assert _counts(Predictions(["score"], np.array([1.0, 3.0]), task="regression")) == "mean 2, from 1 to 3"
