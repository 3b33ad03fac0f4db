"""Data a careless user brings: each problem is one clear error naming the file, column or split (or, for
images that do not decode and the option asks for it, rows skipped and counted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import make_color_images

from peft_ladder.build import build_splits
from peft_ladder.config import ConfigError, load_config
from peft_ladder.data import encode_splits
from peft_ladder.data.images import open_image


def text_config(tmp_path: Path, train_rows: str, validation_rows: str = "text,label\nb,y\nc,x\n", **data):
    (tmp_path / "train.csv").write_text(train_rows)
    (tmp_path / "validation.csv").write_text(validation_rows)
    files = {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv")}
    return load_config(
        None,
        [],
        backbone={"name": "timm:resnet18"},
        strategy={"name": "linear_probe"},
        data={"dataset": "csv", "data_files": files, **data},
    )


@pytest.mark.parametrize(
    ("train", "validation", "message"),
    [
        ("text,label\na,x\nb,\nc,y\n", "text,label\nb,y\nc,x\n", "no label"),  # an empty label
        ("text,label\na,x\nb, \nc,y\n", "text,label\nb,y\nc,x\n", "no label"),  # a blank label
        ("text,label\na,x\nb,y\n", "text,label\nb,y\nc,\t\n", "no label"),  # a blank label in validation
        ("text,label\na,1.0\nb,nan\nc,2.0\n", "text,label\nb,1.0\nc,2.0\n", "no label"),  # a NaN label
        ("text,label\na,x\nb,x\n", "text,label\nb,x\nc,x\n", "single class"),
    ],
)
def test_bad_labels_are_named(tmp_path, train, validation, message):
    with pytest.raises(ValueError, match=message) as err:
        build_splits(text_config(tmp_path, train, validation))
    assert "label" in str(err.value)


def test_an_empty_split_is_named(tmp_path):
    with pytest.raises(ValueError, match="validation split is empty"):
        build_splits(text_config(tmp_path, "text,label\na,x\nb,y\n", "text,label\n"))


def test_max_samples_below_one_fails_when_the_recipe_loads(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.max_samples\.train"):
        text_config(tmp_path, "text,label\na,x\nb,y\n", max_samples={"train": 0})


def test_a_non_utf8_csv_names_the_file_and_the_option(tmp_path):
    rows = "text,label\ncaf\u00e9,x\nna\u00efve,y\n".encode("latin-1")
    (tmp_path / "train.csv").write_bytes(rows)
    (tmp_path / "validation.csv").write_bytes(rows)
    config = load_config(
        None,
        [],
        backbone={"name": "timm:resnet18"},
        strategy={"name": "linear_probe"},
        data={
            "dataset": "csv",
            "data_files": {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv")},
        },
    )
    with pytest.raises(ValueError, match="data.encoding") as err:
        build_splits(config)
    assert "train.csv" in str(err.value)
    latin = config.model_copy(update={"data": config.data.model_copy(update={"encoding": "latin-1"})})
    assert "café" in build_splits(latin).train["text"]


def _truncate_one(images: Path) -> Path:
    victim = sorted((images / "train" / "red").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])
    return victim


def _image_config(images: Path, **data):
    return load_config(
        None,
        [],
        backbone={"name": "timm:resnet18", "pretrained": False},
        strategy={"name": "linear_probe"},
        data={"dataset": str(images / "train").removesuffix("/train"), **data},
    )


def test_an_image_that_does_not_decode_is_named(tmp_path):
    images = make_color_images(tmp_path / "images")
    victim = _truncate_one(images)
    config = _image_config(images)
    splits = build_splits(config)
    from peft_ladder.build import backbone_for

    encoded = encode_splits(splits, backbone_for(config, splits.label_names), config.data)
    with pytest.raises(ValueError, match=victim.name) as err:
        for split in ("train", "validation"):
            for i in range(len(encoded.datasets[split])):
                encoded.datasets[split][i]
    assert "skip_corrupt_images" in str(err.value)


def test_skip_corrupt_images_drops_and_counts_them(tmp_path):
    images = make_color_images(tmp_path / "images")
    _truncate_one(images)
    splits = build_splits(_image_config(images, skip_corrupt_images=True))
    assert any("skipped 1 image" in note for note in splits.notes)
    for ds in (splits.train, splits.validation):
        for item in ds.cast_column(splits.input_column, __import__("datasets").Image(decode=False))[
            splits.input_column
        ]:
            open_image(item)


def test_drop_empty_drops_rows_without_text_or_label_and_counts_them_per_split(tmp_path):
    train = "text,label\na,x\n,y\nb, \n  ,x\nc,y\nd,x\n"  # rows 1 and 3: no text; row 2: a blank label
    validation = "text,label\nb,y\n,x\nc,x\n"
    with pytest.raises(ValueError, match="data.drop_empty"):
        build_splits(text_config(tmp_path, train, validation))
    splits = build_splits(text_config(tmp_path, train, validation, drop_empty=True))
    assert len(splits.train) == 3 and len(splits.validation) == 2
    assert all(text.strip() for text in [*splits.train["text"], *splits.validation["text"]])
    dropped = [note for note in splits.notes if note.startswith("data.drop_empty")]
    assert len(dropped) == 2
    assert "3 of the 6 rows of the train split" in dropped[0] and "2 with no text" in dropped[0]
    assert "1 with no label" in dropped[0] and "1 of the 3 rows of the validation split" in dropped[1]


def test_empty_cells_of_every_kind_are_found():
    from datasets import ClassLabel, Dataset, Features, Image, Value

    from peft_ladder.data.empty import empty_rows

    ds = Dataset.from_dict(
        {
            "image": [
                {"path": "a.png", "bytes": None},
                None,
                {"path": "", "bytes": None},
                {"path": None, "bytes": b"x"},
            ],
            "label": [0, -1, 1, None],
            "score": [1.0, float("nan"), None, 2.0],
            "text": ["a", None, " \t", ""],
        },
        features=Features(
            {
                "image": Image(),
                "label": ClassLabel(names=["a", "b"]),
                "score": Value("float64"),
                "text": Value("string"),
            }
        ),
    )
    assert empty_rows(ds, "image").tolist() == [1, 2]
    assert empty_rows(ds, "label").tolist() == [1, 3]
    assert empty_rows(ds, "score").tolist() == [1, 2]
    assert empty_rows(ds, "text").tolist() == [1, 2, 3]
    assert empty_rows(ds.select([3, 0]), "text").tolist() == [0]  # positions in the selection


@pytest.mark.parametrize(("case_id", "limit"), [("hf_bert", 512), ("hf_roberta", 38)])
def test_max_length_is_checked_against_the_positions_the_model_reaches(tmp_path, case_id, limit):
    from tiny_models import save_tiny

    from peft_ladder.backbones import load_backbone
    from peft_ladder.build import check_max_length

    backbone = load_backbone(f"hf:{save_tiny(case_id, tmp_path / case_id)}", num_labels=2)
    check_max_length(limit, backbone)
    with pytest.raises(ValueError, match=rf"data\.max_length={limit + 1} .*at most {limit}\b"):
        check_max_length(limit + 1, backbone)


def test_a_tokenizer_of_another_model_is_named_before_the_first_forward_pass(tiny_dirs, minilm_dir):
    """The packaged MiniLM tokenizer (30,522 tokens) on a tiny BERT that embeds 64: ids past its table."""
    from peft_ladder import load_backbone
    from peft_ladder.backbones.hf_source import load_tokenizer
    from peft_ladder.data.pipeline import check_vocabulary

    backbone = load_backbone(str(tiny_dirs["hf_bert"]), label_names=["a", "b"])
    with pytest.raises(ValueError, match="backbone.tokenizer"):
        check_vocabulary(load_tokenizer(str(minilm_dir)), minilm_dir, backbone)
    check_vocabulary(load_tokenizer(str(minilm_dir)), minilm_dir, load_backbone("minilm", label_names=["a", "b"]))
