"""Token classification through `train`: a tag per word is read as its own task, the words are aligned as the
transformers examples align them (a word's first sub-token carries its tag), the loss is cross-entropy per tagged
token and ignores every other position, every strategy of the registry trains with it, the metrics are seqeval's
per word, and bad tags are one error naming the column and rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from task_data import task_rows, write_rows, write_splits

from peft_ladder import load_adapted
from peft_ladder.backbones.hf_source import load_tokenizer
from peft_ladder.build import backbone_for, build_splits
from peft_ladder.config import load_config
from peft_ladder.data.pipeline import encode_splits
from peft_ladder.engine import Engine
from peft_ladder.strategies import get_strategy, list_strategies
from peft_ladder.tasks import IGNORE, Task, word_predictions

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "recipes" / "tiny" / "minilm_1layer.yaml"

TAG_NAMES = ["B-ENGINE", "B-GARDEN", "B-RIVER", "I-ENGINE", "I-GARDEN", "I-RIVER", "O"]


@pytest.fixture(scope="module")
def word_data(tmp_path_factory) -> dict[str, str]:
    return write_splits(tmp_path_factory.mktemp("word_data"), {"train": 96, "validation": 48, "test": 48})


def _config(tmp_path, data: dict[str, str], *overrides: str):
    return load_config(
        TINY,
        [
            f"output_dir={tmp_path / 'run'}",
            "data.dataset=json",
            *(f"data.data_files.{split}={path}" for split, path in data.items()),
            "data.text_column=words",
            "data.label_column=ner",
            *overrides,
        ],
    )


def _trained_names(engine: Engine) -> set[str]:
    return {n for n, p in engine.adapted.model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("strategy", [s for s in list_strategies() if s != "scratch"])
def test_every_strategy_trains_a_tagger_and_it_reloads(tmp_path, word_data, strategy):
    # LP-FT's head by one epoch of AdamW: the solved per-token head is the probe's test below (it costs seconds).
    lpft = ["train.lpft.head=epochs", "train.lpft.head_epochs=1"]
    config = _config(tmp_path, word_data, f"strategy.name={strategy}", "train.epochs=2", *lpft)
    engine = Engine(config).setup()
    # The task's loss reaches exactly what the strategy trains: the head, and the backbone part it adapts.
    model = engine.adapted.model
    batch = next(iter(engine.train_loader))
    # engine.model: what trains (the probe: the head on cached tokens), sharing the adapted model's parameters
    engine.task.loss(engine.logits_fn(engine.model, batch), batch["labels"]).backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached <= _trained_names(engine) and any("classifier" in n for n in reached)
    assert any("classifier" not in n for n in reached) == get_strategy(strategy).trains_backbone
    model.zero_grad(set_to_none=True)
    results = engine.train().finish()
    assert results.task["name"] == "token_classification" and results.task["tags"] == TAG_NAMES
    validation = results.splits["validation"]
    assert set(validation.metrics) == {"entity_f1", "entity_precision", "entity_recall", "token_accuracy"}
    # The predictions are per word, in the word labels' layout; the artifact reloads the tagger.
    predicted, truth = engine.predictions["validation"]
    assert predicted.shape == truth.shape and ((predicted == IGNORE) == (truth == IGNORE)).all()
    restored = load_adapted(tmp_path / "run" / "artifact")
    assert restored.backbone.pooling.mode == "token" and restored.backbone.num_labels == len(TAG_NAMES)


def test_the_solved_probe_tags_the_words_a_frozen_layer_sees(tmp_path, word_data):
    results = Engine(_config(tmp_path, word_data, "strategy.name=linear_probe")).run()
    assert results.solver["converged"]
    # Each tag word is its own entity: one frozen layer's token states separate them.
    assert results.splits["validation"].metrics["entity_f1"] > 0.9


def test_a_words_first_sub_token_carries_its_tag_and_every_other_position_is_ignored(tmp_path):
    rows = [{"words": ["unbelievably", "river", "stone"], "ner": ["O", "B-RIVER", "I-RIVER"]}] * 8
    data = {"train": write_rows(tmp_path / "t.jsonl", rows), "validation": write_rows(tmp_path / "v.jsonl", rows)}
    config = _config(tmp_path, data)
    splits = build_splits(config)
    backbone = backbone_for(config, splits.label_names, task=splits.task)
    encoded = encode_splits(splits, backbone, config.data)
    row = encoded.datasets["train"][0]
    tokenizer = load_tokenizer(backbone.data_config["tokenizer"])
    word_ids = tokenizer(rows[0]["words"], is_split_into_words=True).word_ids()
    assert word_ids.count(0) > 1  # "unbelievably" is several sub-tokens
    index = {name: i for i, name in enumerate(splits.label_names)}
    expected, previous = [], None
    for word in word_ids:
        expected.append(IGNORE if word is None or word == previous else index[rows[0]["ner"][word]])
        previous = word
    assert row["labels"] == expected
    assert row["word_labels"] == [index[t] for t in rows[0]["ner"]]
    batch = encoded.collate([encoded.datasets["train"][i] for i in range(3)])
    assert batch["labels"].shape == batch["input_ids"].shape and batch["word_labels"].shape == (3, 3)


def test_the_loss_is_cross_entropy_per_tagged_token_and_ignores_the_rest():
    task = Task("token_classification", tags=("B-X", "O"))
    logits = torch.randn(2, 5, 2, requires_grad=True)
    labels = torch.tensor([[IGNORE, 0, IGNORE, 1, IGNORE], [IGNORE, 1, 1, 1, IGNORE]])
    kept = labels != IGNORE
    expected = torch.nn.functional.cross_entropy(logits[kept], labels[kept])
    loss = task.loss(logits, labels)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert (logits.grad[~kept] == 0).all() and (logits.grad[kept] != 0).any()
    # A sentence's loss is the mean over its own tagged tokens: the unit the ladder compares and resamples.
    rows = task.row_losses(logits.detach(), labels)
    first = torch.nn.functional.cross_entropy(logits.detach()[0][kept[0]], labels[0][kept[0]])
    assert rows.shape == (2,) and torch.allclose(rows[0], first)


def test_a_word_cut_off_by_max_length_is_scored_as_the_most_frequent_tag():
    token_preds = np.array([[5, 0, 5, 1, 5]])
    token_labels = np.array([[IGNORE, 1, IGNORE, 1, IGNORE]])  # two words reached the model
    word_labels = np.array([[1, 1, 0, IGNORE]])  # the third word was cut off
    assert word_predictions(token_preds, token_labels, word_labels, fill=1).tolist() == [[0, 1, 1, IGNORE]]


BAD_TAGS = [
    (lambda rows: rows[3].update(ner=rows[3]["ner"][:-1]), 4),  # one tag short
    (lambda rows: rows[6].update(ner=["O"] * (len(rows[6]["words"]) - 1) + [" "]), 7),  # a blank tag
    (lambda rows: rows[2].update(words="a river"), 3),  # the input is a string, not its words
]


@pytest.mark.parametrize("spoil, line", BAD_TAGS, ids=["short", "blank", "string-input"])
def test_bad_tags_are_an_error_naming_the_column_and_the_line(tmp_path, spoil, line):
    rows = task_rows(40, 3)
    spoil(rows)
    data = {"train": write_rows(tmp_path / "train.jsonl", rows)}
    config = _config(tmp_path, data, "data.task=token_classification")
    with pytest.raises(ValueError, match=f"data.label_column='ner'.*line {line}\\b"):
        build_splits(config)


def test_a_tag_unseen_in_training_is_named(tmp_path):
    train, validation = task_rows(40, 1), task_rows(12, 2)
    validation[4]["ner"] = ["B-VOLCANO"] + validation[4]["ner"][1:]
    data = {
        "train": write_rows(tmp_path / "t.jsonl", train),
        "validation": write_rows(tmp_path / "v.jsonl", validation),
    }
    with pytest.raises(ValueError, match="B-VOLCANO"):
        build_splits(_config(tmp_path, data))


def test_a_tagger_through_the_cli_says_bad_tags_in_one_paragraph(tmp_path):
    rows = task_rows(40, 3)
    rows[5]["ner"] = rows[5]["ner"][:-1]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = _cli(tmp_path, train, "data.text_column=words", "data.label_column=ner", "data.task=token_classification")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "data.label_column='ner'" in errors[0]


def _cli(tmp_path: Path, train: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "peft_ladder.cli", "train", "--recipe", str(TINY), "data.dataset=json"]
        + [f"data.data_files.train={train}", f"output_dir={tmp_path / 'out'}", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


@pytest.mark.parametrize("strategy", ["lora", "full"])
def test_the_export_loads_as_a_stock_token_classifier_and_the_pipeline_tags_as_the_run_did(
    tmp_path, word_data, strategy
):
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from peft_ladder import export

    Engine(_config(tmp_path, word_data, f"strategy.name={strategy}", "train.epochs=2")).run()
    artifact = tmp_path / "run" / "artifact"
    ours = load_adapted(artifact)
    folder = export(artifact, tmp_path / "export")
    model = AutoModelForTokenClassification.from_pretrained(folder).eval()  # no remote code: the family's own class
    assert model.config.id2label == dict(enumerate(TAG_NAMES))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words = json.loads(Path(word_data["test"]).read_text().splitlines()[0])["words"]
    inputs = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        expected = ours.backbone.logits(ours.model.eval(), dict(inputs))
        torch.testing.assert_close(model(**inputs).logits, expected, rtol=0, atol=1e-4)
    tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, ignore_labels=[])
    tagged = tagger(" ".join(words))
    probabilities = torch.softmax(expected[0], -1)[1:-1]  # the pipeline drops [CLS] and [SEP]
    assert [t["entity"] for t in tagged] == [TAG_NAMES[i] for i in probabilities.argmax(-1)]
    assert np.allclose([t["score"] for t in tagged], probabilities.max(-1).values.numpy(), atol=1e-4)


def test_a_hub_style_ner_dataset_is_found_and_its_class_label_ids_read_by_name(tmp_path):
    """conll2003's layout: `tokens` and `ner_tags`, the tags stored as `ClassLabel` ids (whose order is not sorted)."""
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    names = ["O", "B-ENGINE", "I-ENGINE", "B-GARDEN", "I-GARDEN", "B-RIVER", "I-RIVER"]
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    files = {}
    for split, n in (("train", 64), ("validation", 24)):
        rows = task_rows(n, len(files))
        columns = {"tokens": [r["words"] for r in rows], "ner_tags": [[names.index(t) for t in r["ner"]] for r in rows]}
        files[split] = str(tmp_path / f"{split}.parquet")
        Dataset.from_dict(columns, features=features).to_parquet(files[split])
    config = load_config(
        TINY,
        [f"output_dir={tmp_path / 'run'}", "data.dataset=parquet"]
        + [f"data.data_files.{split}={path}" for split, path in files.items()],
    )
    splits = build_splits(config)
    assert splits.task.per_token and splits.input_column == "tokens"
    first = task_rows(64, 0)[0]
    assert [splits.label_names[i] for i in splits.train[0]["labels"]] == first["ner"]


@pytest.fixture(scope="module")
def cut_tagger(tmp_path_factory, word_data):
    """A LoRA tagger trained once at a max_length that cuts some rows, with its own test predictions."""
    tmp_path = tmp_path_factory.mktemp("cut_tagger")
    engine = Engine(_config(tmp_path, word_data, "strategy.name=lora", "train.epochs=2", "data.max_length=12"))
    results = engine.run()
    return tmp_path / "run", results, engine.predictions["test"][0]


@pytest.mark.parametrize("source", ["artifact", "export"])
def test_predict_and_evaluate_tag_each_word_as_the_run_did(tmp_path, word_data, cut_tagger, source, capsys):
    """`predict` writes each row's words and one tag per word, and `evaluate` scores them with the run's entity
    metrics, from the run's artifact or its stock export; max_length cuts some rows, as it did in training."""
    import csv

    from peft_ladder import evaluate, export, predict
    from peft_ladder.cli import main

    run, results, predicted = cut_tagger
    model = run / "artifact"
    if source == "export":  # an export records no run: its tag column and max_length are named
        model = export(model, tmp_path / "export")
    options = {"label_column": "ner", "max_length": 12} if source == "export" else {}
    report = evaluate(model, word_data["test"], progress=False, **options)
    for name, value in results.splits["test"].metrics.items():
        assert report.metrics[name] == pytest.approx(value, abs=1e-6), name
        assert report.intervals[name].low <= value <= report.intervals[name].high, name
    out = predict(model, word_data["test"], out=tmp_path / "tags.jsonl", progress=False, max_length=12)
    written = [json.loads(line) for line in out.out.read_text().splitlines()]
    rows = [json.loads(line) for line in Path(word_data["test"]).read_text().splitlines()]
    assert [r["words"] for r in written] == [r["words"] for r in rows]
    # The run's own test predictions, word for word (a word past max_length gets the run's fill tag).
    assert [r["tags"] for r in written] == [[TAG_NAMES[t] for t in row[row != IGNORE]] for row in predicted]
    if source == "artifact":  # the CLI: a CSV of space-joined words and tags
        assert main(["predict", str(run), word_data["test"], "--out", str(tmp_path / "tags.csv")]) == 0
        with open(tmp_path / "tags.csv", newline="") as f:
            assert [r["tags"].split() for r in csv.DictReader(f)] == [r["tags"] for r in written]
        assert "words)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("strategy", "cut"), [("linear_probe", "head input"), ("partial_unfreeze", "input of block 1")]
)
def test_a_tagger_trains_on_its_cached_tokens_and_its_artifact_tags_as_the_run_did(tmp_path, word_data, strategy, cut):
    """The frozen part of a tagger runs once: its tokens' activations are cached (real tokens only, each with its
    tag, the words' tags beside them), and the head or the tail trains on them. The whole model, reloaded from
    the artifact, tags every word as the run's cached evaluation did."""
    from peft_ladder import predict

    options = [
        f"strategy.name={strategy}",
        *(["strategy.last_k=1"] if strategy == "partial_unfreeze" else []),
        "backbone.model_kwargs.num_hidden_layers=2",
        f"cache.dir={tmp_path / 'cache'}",
        "data.max_length=12",  # some rows lose words: they are scored all the same
    ]
    engine = Engine(_config(tmp_path, word_data, *options))
    results = engine.run()
    assert results.cache.used and results.cache.cut == cut, results.cache
    assert (results.cache.hits, results.cache.misses) == (0, 3)
    if strategy == "linear_probe":
        assert results.solver["converged"] and results.splits["validation"].metrics["entity_f1"] > 0.9
    predicted, truth = engine.predictions["validation"]
    assert ((predicted == IGNORE) == (truth == IGNORE)).all()
    artifact, rows = tmp_path / "run" / "artifact", word_data["validation"]
    out = predict(artifact, rows, out=tmp_path / "tags.jsonl", progress=False, max_length=12)
    written = [json.loads(line)["tags"] for line in out.out.read_text().splitlines()]
    assert written == [[TAG_NAMES[t] for t in row[row != IGNORE]] for row in predicted]
    again = Engine(_config(tmp_path / "again", word_data, *options)).run()
    assert (again.cache.hits, again.cache.misses) == (3, 0)
    assert again.splits["validation"].metrics == results.splits["validation"].metrics
