"""Bad inputs through the real CLI: each ends with one `error:` paragraph that names the key, file or column,
exit status 2 and no traceback; `--debug` and PEFT_LADDER_DEBUG=1 show the traceback instead, and real bugs
always do.

`import peft_ladder` takes seconds, so the table runs in ONE child process (this file run as a script: it calls
`peft_ladder.cli.main(argv)` per case and records the status and stderr as JSON); three more child processes
check the same end to end (console script, `python -m peft_ladder.train`). Inputs are tiny files written here;
nothing is downloaded (HF_HUB_OFFLINE, HF_DATASETS_OFFLINE), no GPU is used (CUDA_VISIBLE_DEVICES="").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
W, C = "{w}", "{c}"  # placeholders: the shared input folder, the case's own folder
RAISED = "raised"  # the driver's status for an exception that escaped main (a traceback)

TRAIN = {
    "backbone": {"name": "minilm", "model_kwargs": {"num_hidden_layers": 1}},
    "strategy": {"name": "linear_probe"},
    "data": {
        "dataset": "csv",
        "data_files": {"train": f"{W}/train.csv", "validation": f"{W}/validation.csv"},
        "max_length": 16,
    },
    "train": {"epochs": 1, "batch_size": 8},
    "log_with": "none",
    "output_dir": f"{C}/out",
}
LADDER = {
    **{k: v for k, v in TRAIN.items() if k != "strategy"},
    "ladder": {"rungs": [{"name": "linear_probe"}, {"name": "lora"}], "scratch": False, "baseline": False},
}
TEXT_ROWS = [("a function that returns a list", "code"), ("the weather is nice today", "chat")] * 4
# A tracker Accelerate knows that this machine lacks (found without importing anything).
MISSING_TRACKER = next(
    (name for name in ("wandb", "aim", "mlflow", "clearml", "dvclive", "swanlab", "trackio") if not find_spec(name)),
    None,
)
# Aliases that expand ten-fold per level: over a billion values from a 10-line recipe (billion laughs).
YAML_BOMB = "".join(
    [
        "backbone: {name: minilm}\n",
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
        *(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
    ]
)


@dataclass(frozen=True)
class Case:
    """argv (with {w} / {c}); `recipe` is written to {c}/recipe.yaml (a mapping, or raw text); `says` are the
    key / file / column the message must name."""

    id: str
    argv: list[str]
    says: tuple[str, ...]
    recipe: dict | str | None = None
    env: dict[str, str] = field(default_factory=dict)
    status: int | str = 2


def with_(base: dict, **sections) -> dict:
    """`base` with whole top-level sections replaced (None: removed) or a section's keys updated (a dict)."""
    out = json.loads(json.dumps(base))
    for key, value in sections.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def train(*args: str, recipe: dict | str = TRAIN, **kwargs) -> dict:
    return dict(argv=["train", "--recipe", f"{C}/recipe.yaml", *args], recipe=recipe, **kwargs)


def ladder(*args: str, recipe: dict | str = LADDER, **kwargs) -> dict:
    return dict(argv=["ladder", "--recipe", f"{C}/recipe.yaml", *args], recipe=recipe, **kwargs)


def rungs(*specs: dict) -> dict:
    return with_(LADDER, ladder={"rungs": list(specs), "scratch": False, "baseline": False})


def files(train_file: str, validation_file: str = "validation.csv") -> dict:
    return with_(TRAIN, data={"data_files": {"train": f"{W}/{train_file}", "validation": f"{W}/{validation_file}"}})


def case(name: str, says: tuple[str, ...] | str, **spec) -> Case:
    return Case(id=name, says=(says,) if isinstance(says, str) else says, **spec)


CASES = [
    # ---- the recipe's keys, types and ranges
    case("unknown top-level key", ("trian", "did you mean `train`"), **train("trian.epochs=1")),
    case("unknown nested key", ("train.epoch", "`epochs`"), **train("train.epoch=2")),
    case("wrong type", ("train.epochs", "many"), **train("train.epochs=many")),
    case("batch size 0", "train.batch_size", **train("train.batch_size=0")),
    case("validation fraction above 1", "data.validation_fraction", **train("data.validation_fraction=1.5")),
    case("confidence below 0.5", "ladder.confidence", **ladder("ladder.confidence=0.3")),
    case("unknown precision", ("train.mixed_precision", "bf16"), **train("train.mixed_precision=fp8")),
    case("max_samples 0", "data.max_samples.train", **train("data.max_samples.train=0")),
    case("missing section", ("backbone", "missing"), **train(recipe=with_(TRAIN, backbone=None))),
    case("neither strategy nor ladder", ("strategy", "ladder"), **train(recipe=with_(TRAIN, strategy=None))),
    case("unknown strategy", ("strategy", "nope", "linear_probe"), **train("strategy.name=nope")),
    case("bad strategy option", ("strategy", "rank"), **train("strategy.name=lora", "strategy.rank=4")),
    case("strategy without name", ("strategy", "needs `name`"), **train(recipe={**TRAIN, "strategy": {"r": 4}})),
    case(
        "backbone LR above head LR",
        "train.backbone_lr",
        **train("strategy.name=full", "train.backbone_lr=0.5", "train.head_lr=0.001"),
    ),
    case("push without a repo", "hub_model_id", **train("push_to_hub=true")),
    case("bad hub_model_id", ("hub_model_id", "not a repo"), **train("hub_model_id=not a repo")),
    case("unresolved interpolation", ("output_dir", "nope"), **train("output_dir=${nope}")),
    case("negative seed", ("train.seed", "-1", "2**32 - 1"), **train("train.seed=-1")),
    case("seed above numpy's range", ("train.seed", "4294967296"), **train("train.seed=4294967296")),
    case("ladder seed out of range", ("ladder.seeds.1", "-5"), **ladder("ladder.seeds=[1,-5]")),
    case(
        "ladder's added seeds out of range",
        ("train.seed", "ladder.max_seeds", "4294967295"),
        **ladder("train.seed=4294967295"),
    ),
    case("unknown tracker", ("log_with", "bogus", "tensorboard", "wandb"), **train("log_with=[bogus]")),
    *(
        [
            case(
                "tracker not installed",
                ("log_with", f"pip install {MISSING_TRACKER}"),
                **train(f"log_with=[{MISSING_TRACKER}]"),
            )
        ]
        if MISSING_TRACKER
        else []
    ),
    case(
        "trust_remote_code in model_kwargs",
        ("backbone.model_kwargs", "backbone.trust_remote_code"),
        **train("backbone.model_kwargs.trust_remote_code=true"),
    ),
    case(
        "num_labels in model_kwargs",
        ("backbone.model_kwargs", "num_labels"),
        **train("backbone.model_kwargs.num_labels=3"),
    ),
    # ---- ladder rungs
    case("unknown rung", ("ladder.rungs.0", "nope"), **ladder(recipe=rungs({"name": "nope"}))),
    case("bad rung option", ("ladder.rungs.0", "rank"), **ladder(recipe=rungs({"name": "lora", "rank": 4}))),
    case(
        "duplicate rung id",
        ("ladder.rungs", "'lora'", "twice"),
        **ladder(recipe=rungs({"name": "lora"}, {"name": "lora"})),
    ),
    case(
        "unsafe rung id", ("ladder.rungs.0", "x/../../.."), **ladder(recipe=rungs({"name": "lora", "id": "x/../../.."}))
    ),
    case("scratch as a rung", "ladder.scratch", **ladder(recipe=rungs({"name": "scratch"}))),
    case(
        "strategy and ladder",
        ("strategy", "ladder", "keep one"),
        **ladder(recipe=with_(LADDER, strategy={"name": "lora"})),
    ),
    # ---- the YAML itself (each names the file and the line)
    case("YAML list", ("recipe.yaml", "line 1", "a list"), **train(recipe="- backbone: minilm\n- data: csv\n")),
    case("YAML single value", ("recipe.yaml", "line 1", "single value"), **train(recipe="minilm\n")),
    case(
        "YAML duplicate key",
        ("recipe.yaml", "line 4", "`train.epochs`", "line 3"),
        **train(recipe="backbone: {name: minilm}\ntrain:\n  epochs: 1\n  epochs: 2\n"),
    ),
    case(
        "YAML python tag",
        ("recipe.yaml", "line 2", "`x`", "!!python/object/apply:os.system"),
        **train(recipe=f"backbone: {{name: minilm}}\nx: !!python/object/apply:os.system ['touch {C}/PWNED']\n"),
    ),
    case("YAML python name tag", ("line 1", "!!python/name:os.system"), **train(recipe="x: !!python/name:os.system\n")),
    case("YAML custom tag", ("line 2", "`data.dataset`", "!custom"), **train(recipe="data:\n  dataset: !custom x\n")),
    case("YAML syntax", ("recipe.yaml", "line 2", "not valid YAML"), **train(recipe="train: [1, 2\nbackbone: x\n")),
    case("YAML two documents", ("recipe.yaml", "another document"), **train(recipe="train: {}\n---\ndata: {}\n")),
    case("YAML alias bomb", ("recipe.yaml", "aliases", "5,000"), **train(recipe=YAML_BOMB)),
    case("YAML recursive alias", ("recipe.yaml", "line 1", "recursive"), **train(recipe="a: &a [1, *a]\n")),
    case("recipe missing", ("nowhere.yaml", "does not exist"), argv=["train", "--recipe", f"{C}/nowhere.yaml"]),
    case("recipe is a folder", ("recipes_dir", "is a folder"), argv=["train", "--recipe", f"{W}/recipes_dir"]),
    case("recipe not UTF-8", ("latin1.yaml", "UTF-8"), argv=["train", "--recipe", f"{W}/latin1.yaml"]),
    case("recipe unreadable", ("locked.yaml", "cannot be read"), argv=["train", "--recipe", f"{W}/locked.yaml"]),
    # ---- the command line
    case("override without =", ("train.epochs", "key=value"), **train("train.epochs")),
    case("override not YAML", ("train.epochs=[1", "not valid YAML"), **train("train.epochs=[1")),
    case(
        "override with a python tag",
        ("output_dir", "!!python/object/apply:os.system"),
        **train(f"output_dir=!!python/object/apply:os.system ['touch {C}/PWNED']"),
    ),
    case("old --resume PATH", ("--resume-from", "key=value"), **train("--resume", f"{W}/recipes_dir")),
    case("--all on a train recipe", ("--all", "ladder"), **train("--all")),
    case("ladder command, train recipe", ("recipe.yaml", "no `ladder` section"), **ladder(recipe=TRAIN)),
    case("--resume and --resume-from", ("--resume", "--resume-from"), **train("--resume", "--resume-from", f"{W}")),
    case(
        "--resume-from missing",
        ("--resume-from", "no_checkpoint", "step_N"),
        **train("--resume-from", f"{C}/no_checkpoint"),
    ),
    case("--resume-from on a ladder", ("--resume-from", "--resume"), **ladder("--resume-from", f"{W}")),
    case("unknown command", ("trian", "train, ladder"), argv=["trian", "--recipe", "x.yaml"]),
    case("unknown flag", "--bogus", **train("--bogus")),
    case("no --recipe", "--recipe", argv=["train"]),
    # ---- the output folder and the machine
    case("fp16 on CPU", ("train.mixed_precision", "GPU"), **train("train.mixed_precision=fp16")),
    case("train output_dir holds a run", ("finished_train", "--overwrite"), **train(f"output_dir={W}/finished_train")),
    case("--resume without a checkpoint", ("--resume", "checkpoint"), **train("--resume")),
    case(
        "ladder output_dir holds a run", ("finished_ladder", "overwrite"), **ladder(f"output_dir={W}/finished_ladder")
    ),
    case("output_dir is a file", "train.csv", **train(f"output_dir={W}/train.csv/out")),
    # ---- data
    case(
        "dataset file missing",
        ("data.dataset", "nope.csv"),
        **train(f"data.dataset={W}/nope.csv", "data.data_files=null"),
    ),
    case("data_files missing", ("data.data_files", "nope.csv"), **train(recipe=files("nope.csv"))),
    case("unsupported file type", ("data.data_files", ".txt"), **train(recipe=files("notes.txt", "notes.txt"))),
    case(
        "Hub dataset offline",
        ("data.dataset", "nope-org/nope-ds", "HF_HUB_OFFLINE"),
        **train("data.dataset=nope-org/nope-ds", "data.data_files=null"),
    ),
    case(
        "image folder without images",
        ("data.dataset", "recipes_dir"),
        **train(f"data.dataset={W}/recipes_dir", "data.data_files=null"),
    ),
    case(
        "validation carve too small",
        ("data.validation_fraction", "data.validation_split"),
        **train(f"data.dataset={W}/images", "data.data_files=null"),
    ),
    case("text column missing", ("data.text_column", "body"), **train("data.text_column=body")),
    case("label column missing", ("data.label_column", "target"), **train("data.label_column=target")),
    case(
        "image column missing",
        ("data.image_column", "pic"),
        **train(f"data.dataset={W}/images", "data.data_files=null", "data.image_column=pic"),
    ),
    case("unknown validation split", ("data.validation_split", "dev"), **train("data.validation_split=dev")),
    case("unknown train split", ("data.train_split", "training"), **train("data.train_split=training")),
    case("max_samples of an unknown split", "data.max_samples.dev", **train("data.max_samples.dev=5")),
    case(
        "slice value not a class",
        ("data.slices", "zebra"),
        **train(recipe=with_(TRAIN, data={"slices": [{"name": "s", "column": "label", "values": ["zebra"]}]})),
    ),
    case(
        "slice column missing",
        ("data.slices", "topic"),
        **train(recipe=with_(TRAIN, data={"slices": [{"name": "s", "column": "topic", "values": ["a"]}]})),
    ),
    case("empty csv split", ("validation", "empty.csv"), **train(recipe=files("train.csv", "empty.csv"))),
    case("single class", ("data.label_column", "single class"), **train(recipe=files("single.csv"))),
    case("NaN labels", ("data.label_column", "no label", "line 10 of", "nan.csv"), **train(recipe=files("nan.csv"))),
    case(
        "blank labels",
        ("data.label_column", "'label'", "2 row(s)", "train split", "lines 10, 11 of", "blank_label.csv"),
        **train(recipe=files("blank_label.csv")),
    ),
    case(
        "blank label in validation",
        ("data.label_column", "validation split", "line 4 of", "blank_label_val.csv"),
        **train(recipe=files("train.csv", "blank_label_val.csv")),
    ),
    case(
        "empty text cells",
        ("data.text_column", "'text'", "lines 3, 8 of", "empty_text.csv", "data.drop_empty"),
        **train(recipe=files("empty_text.csv")),
    ),
    case(
        "empty text, rows not one per line",
        ("data.text_column", "row 2 of", "empty_text_multiline.csv", "counted from 0"),
        **train(recipe=files("empty_text_multiline.csv")),
    ),
    case(
        "classes too small for the validation carve",
        ("data.label_column", "data.validation_fraction", "single row", "data.validation_split"),
        **train(recipe=with_(TRAIN, data={"data_files": {"train": f"{W}/one_row_per_class.csv"}})),
    ),
    case("csv not UTF-8", ("data.encoding", "latin1.csv"), **train(recipe=files("latin1.csv"))),
    case("unknown encoding", ("data.encoding", "nope-enc"), **train("data.encoding=nope-enc")),
    case("csv that does not parse", ("data.data_files", "broken.csv"), **train(recipe=files("broken.csv"))),
    # ---- backbones
    case("unknown backbone name", ("backbone.name", "nope"), **train("backbone.name=nope")),
    case(
        "local backbone folder missing", ("backbone.name", "no_such_model"), **train(f"backbone.name={W}/no_such_model")
    ),
    case("folder without config.json", ("backbone.name", "config.json"), **train(f"backbone.name={W}/recipes_dir")),
    case("pickled-only weights", ("pickled", "backbone.allow_pickle"), **train(f"backbone.name={W}/pickled")),
    case("artifact as backbone", ("backbone.name", "load_adapted"), **train(f"backbone.name={W}/artifact")),
    case("unknown timm model", ("backbone.name", "resnet9999"), **train("backbone.name=timm:resnet9999")),
    case(
        "Hub model offline",
        ("backbone.name", "nope-org/nope-model", "HF_HUB_OFFLINE"),
        **train("backbone.name=hf:nope-org/nope-model"),
    ),
    case("hf: folder missing", ("backbone.name", "nowhere"), **train(f"backbone.name=hf:{W}/nowhere")),
    case(
        "checkpoint missing",
        ("backbone.checkpoint", "nope.safetensors"),
        **train("backbone.name=timm:resnet18", f"backbone.checkpoint={W}/nope.safetensors"),
    ),
    case(
        ".pt checkpoint without allow_pickle",
        ("weights.pt", "backbone.allow_pickle"),
        **train("backbone.name=timm:resnet18", f"backbone.checkpoint={W}/weights.pt"),
    ),
    case(
        "timm kwargs that do not fit",
        "backbone.model_kwargs",
        **train("backbone.name=timm:resnet18", "backbone.pretrained=false", "backbone.model_kwargs.img_size=64"),
    ),
    case("data_config on a text model", "backbone.data_config", **train("backbone.data_config.input_size=64")),
    case("max_length past the positions", ("data.max_length", "100000", "512"), **train("data.max_length=100000")),
    case(
        "text backbone, image data",
        ("backbone.name", "minilm", "image"),
        **train(f"data.dataset={W}/images", "data.data_files=null", "data.validation_fraction=0.5"),
    ),
    case(
        "config.json not JSON",
        ("backbone.name", "config.json", "not valid JSON"),
        **train(f"backbone.name={W}/bad_json"),
    ),
    # ---- push and export
    case("push: bad repo id", "'not a repo!'", argv=["push", f"{W}/artifact", "--repo-id", "not a repo!"]),
    case("push: not an artifact", "no_artifact", argv=["push", f"{W}/no_artifact", "--repo-id", "u/x", "--dry-run"]),
    case("push: --rung on a train run", "--rung", argv=["push", f"{W}/artifact", "--repo-id", "u/x", "--rung", "lora"]),
    case(
        "push: offline",
        "HF_HUB_OFFLINE",
        argv=["push", f"{W}/artifact", "--repo-id", "u/x", "--token", "hf_secret"],
    ),
    case("export: not an artifact", "no_artifact", argv=["export", f"{W}/no_artifact", "--out", f"{C}/out"]),
    case(
        "export: --out exists",
        ("no_artifact", "--overwrite"),
        argv=["export", f"{W}/artifact", "--out", f"{W}/no_artifact"],
    ),
    # ---- --debug and PEFT_LADDER_DEBUG=1 show the traceback; --help and --version succeed
    case("--debug", "ConfigError", argv=["train", "--recipe", f"{C}/nowhere.yaml", "--debug"], status=RAISED),
    case("--debug before the command", "ConfigError", argv=["--debug", "train", "--recipe", "x.yaml"], status=RAISED),
    case(
        "PEFT_LADDER_DEBUG=1",
        "ConfigError",
        argv=["train", "--recipe", "x.yaml"],
        env={"PEFT_LADDER_DEBUG": "1"},
        status=RAISED,
    ),
    case("--help", ("train", "ladder", "push", "export"), argv=["--help"], status=0),
    case("-h", ("train", "ladder", "push", "export"), argv=["-h"], status=0),
    case("--version", "peft-ladder 0.", argv=["--version"], status=0),
]
ERROR_CASES = [c for c in CASES if c.status == 2]
assert len(ERROR_CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


def _write_world(root: Path) -> None:
    """The inputs the cases point at ({w})."""
    import csv

    def rows(name: str, data: list[tuple[str, str]], encoding: str = "utf-8") -> None:
        with open(root / name, "w", newline="", encoding=encoding) as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(data)

    root.mkdir(parents=True, exist_ok=True)
    rows("train.csv", TEXT_ROWS)
    rows("validation.csv", TEXT_ROWS)
    rows("empty.csv", [])
    rows("single.csv", [(t, "code") for t, _ in TEXT_ROWS])
    rows("nan.csv", [*TEXT_ROWS, ("no label here", "")])
    rows("blank_label.csv", [*TEXT_ROWS, ("a blank label", " "), ("another", "  ")])  # lines 10, 11
    rows("blank_label_val.csv", [*TEXT_ROWS[:2], ("a blank label", "\t"), *TEXT_ROWS])  # line 4
    empty_texts = list(TEXT_ROWS)
    empty_texts[1], empty_texts[6] = ("", "chat"), ("   ", "code")  # lines 3 and 8
    rows("empty_text.csv", empty_texts)
    rows("empty_text_multiline.csv", [("a text\nover two lines", "code"), TEXT_ROWS[1], ("", "chat"), *TEXT_ROWS])
    rows("one_row_per_class.csv", [(f"text number {i}", f"class{i}") for i in range(200)])
    rows("latin1.csv", [("caf\u00e9 na\u00efve", "code"), *TEXT_ROWS], encoding="latin-1")
    (root / "broken.csv").write_text('text,label\n"an open quote,code\nb,chat\n')
    (root / "notes.txt").write_text("a note\n")
    (root / "latin1.yaml").write_bytes("backbone: {name: caf\u00e9}\n".encode("latin-1"))
    (root / "locked.yaml").write_text("backbone: {name: minilm}\n")
    (root / "locked.yaml").chmod(0)
    (root / "recipes_dir").mkdir()
    (root / "recipes_dir" / "a.yaml").write_text("backbone: {name: minilm}\n")
    (root / "pickled").mkdir()
    (root / "pickled" / "config.json").write_text('{"model_type": "bert"}')
    (root / "pickled" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    (root / "weights.pt").write_bytes(b"not really a pickle")
    (root / "bad_json").mkdir()
    (root / "bad_json" / "config.json").write_text('{"model_type": "bert",}')
    (root / "artifact").mkdir()
    (root / "artifact" / "peft_ladder.json").write_text("{}")
    (root / "no_artifact").mkdir()
    (root / "finished_train" / "artifact").mkdir(parents=True)
    (root / "finished_ladder").mkdir()
    (root / "finished_ladder" / "transfer_note.json").write_text("{}")
    from PIL import Image

    for label, color in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        folder = root / "images" / "train" / label
        folder.mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), color).save(folder / f"{i}.png")


def _expand(value: str, world: Path, folder: Path) -> str:
    return value.replace(W, str(world)).replace(C, str(folder))


def _child_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PEFT_LADDER_DEBUG", "HF_TOKEN")}
    return {
        **env,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_DATASETS_CACHE": str(cache / "datasets"),
        "PEFT_LADDER_CACHE": str(cache / "peft_ladder"),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
    }


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict:
    """Every case through `cli.main` in one child process, and the end-to-end ones beside it."""
    root = tmp_path_factory.mktemp("bad_inputs")
    world = root / "world"
    _write_world(world)
    plan = []
    for i, c in enumerate(CASES):
        folder = root / f"case{i:02d}"
        folder.mkdir()
        if isinstance(c.recipe, dict):
            (folder / "recipe.yaml").write_text(_expand(yaml.safe_dump(c.recipe), world, folder))
        elif isinstance(c.recipe, str):
            (folder / "recipe.yaml").write_text(_expand(c.recipe, world, folder))
        plan.append(
            {"id": c.id, "argv": [_expand(a, world, folder) for a in c.argv], "env": c.env, "folder": str(folder)}
        )
    (root / "plan.json").write_text(json.dumps(plan))
    env = _child_env(root / "cache")
    driver = subprocess.Popen(
        [sys.executable, __file__, str(root / "plan.json"), str(root / "results.json")],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ends = _start_end_to_end(root, env)
    log = driver.communicate(timeout=300)[0]
    assert driver.returncode == 0, log[-5000:]
    results = json.loads((root / "results.json").read_text())
    results["end_to_end"] = {name: (p, *p.communicate(timeout=300)) for name, p in ends.items()}
    results["folders"] = {c.id: Path(p["folder"]) for c, p in zip(CASES, plan)}
    results["root"] = root
    return results


def _start_end_to_end(root: Path, env: dict[str, str]) -> dict[str, subprocess.Popen]:
    e2e = root / "e2e"
    e2e.mkdir()
    (e2e / "list.yaml").write_text("- backbone: minilm\n")
    (e2e / "tag.yaml").write_text(f"backbone: !!python/object/apply:os.system ['touch {e2e}/PWNED']\n")

    def start(args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(args, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    return {
        "console script": start([str(BIN / "peft-ladder"), "train", "--recipe", str(e2e / "list.yaml")]),
        "python -m": start([sys.executable, "-m", "peft_ladder.train", "--recipe", str(e2e / "tag.yaml")]),
        "--debug": start([sys.executable, "-m", "peft_ladder.train", "--recipe", str(e2e / "tag.yaml"), "--debug"]),
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_each_bad_input_is_one_error_paragraph_naming_what_to_fix(ran, case):
    if case.id == "recipe unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file without permissions")
    got = ran[case.id]
    stderr, stdout = got["stderr"], got["stdout"]
    assert got["status"] == case.status, stderr[-3000:]
    if case.status == RAISED:
        assert "Traceback (most recent call last)" in stderr and all(s in stderr for s in case.says), stderr[-3000:]
        return
    if case.status == 0:
        assert all(s in stdout for s in case.says) and not stderr.strip(), stdout + stderr
        return
    assert "Traceback" not in stderr, stderr[-3000:]
    # Library output (progress bars, warnings) may come first; the error is the last paragraph, said once.
    starts = [i for i, line in enumerate(stderr.splitlines()) if line.startswith("error: ")]
    assert len(starts) == 1, stderr[-3000:]
    message = "\n".join(stderr.splitlines()[starts[0] :]).strip()
    assert "\n\n" not in message, message
    missing = [s for s in case.says if s not in message]
    assert not missing, f"{missing} not named in: {message}"
    assert "hf_secret" not in stdout + stderr


def test_a_python_tag_never_runs(ran):
    for name in ("YAML python tag", "override with a python tag"):
        assert not (ran["folders"][name] / "PWNED").exists(), name


def test_end_to_end_exit_status_and_no_traceback(ran):
    for name in ("console script", "python -m"):
        process, stdout, stderr = ran["end_to_end"][name]
        assert process.returncode == 2, stderr[-3000:]
        assert stderr.startswith("error: ") and "Traceback" not in stderr, stderr[-3000:]
    assert "list.yaml, line 1" in ran["end_to_end"]["console script"][2]
    assert "!!python/object/apply:os.system" in ran["end_to_end"]["python -m"][2]
    process, stdout, stderr = ran["end_to_end"]["--debug"]
    assert process.returncode == 1 and "Traceback (most recent call last)" in stderr and "ConfigError" in stderr
    assert not (ran["root"] / "e2e" / "PWNED").exists()


# ---- which exceptions are user errors (here, in this process)


def _caught(fn) -> Exception:
    try:
        fn()
    except Exception as err:
        return err
    raise AssertionError(f"{fn} did not raise")


def _fail(err: Exception):
    raise err


def test_raise_statements_of_peft_ladder_and_library_not_found_errors_are_user_errors():
    import timm

    from peft_ladder.config import load_config
    from peft_ladder.errors import is_user_error
    from peft_ladder.strategies import get_strategy

    assert is_user_error(_caught(lambda: load_config("/nowhere.yaml")))  # a ConfigError (still a ValueError)
    assert is_user_error(_caught(lambda: get_strategy("nope")))  # KeyError raised by peft_ladder
    assert is_user_error(_caught(lambda: timm.create_model("resnet9999")))  # timm's RuntimeError('Unknown model')
    assert is_user_error(PermissionError(13, "Permission denied", "/root/out"))  # names the path


def test_yaml_aliases_within_the_limit_still_load(tmp_path):
    from peft_ladder.config import load_config

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(with_(TRAIN, train=None)) + "train: {batch_size: &n 4, epochs: *n}\n")
    assert load_config(recipe).train.epochs == 4


def test_bugs_keep_their_traceback():
    import torch

    from peft_ladder.errors import ConfigError, is_user_error, run_command

    assert not is_user_error(_caught(lambda: {}["key"]))  # a lookup that failed, not a `raise`
    assert not is_user_error(_caught(lambda: int("x")))
    assert not is_user_error(_caught(lambda: 1 / 0))
    # A missing file that no check of ours named: where it comes from is in the traceback.
    assert not is_user_error(_caught(lambda: open("/nowhere/x")))
    assert not is_user_error(_caught(lambda: _fail(AssertionError("invariant"))))
    assert not is_user_error(_caught(lambda: torch.zeros(2) @ torch.zeros(3)))  # RuntimeError inside torch
    # A ValueError raised inside torch (not by peft_ladder's checks) is a bug too.
    logits, labels = torch.zeros(2, 3), torch.zeros(3, dtype=torch.long)
    assert not is_user_error(_caught(lambda: torch.nn.functional.cross_entropy(logits, labels)))
    with pytest.raises(ZeroDivisionError):
        run_command(lambda: 1 / 0)
    assert run_command(lambda: _fail(ConfigError("x.yaml: bad"))) == 2
    with pytest.raises(ConfigError):
        run_command(lambda: _fail(ConfigError("x.yaml: bad")), debug=True)


# ---- the driver: this file run as a script in the child process


def _drive(plan_file: str, results_file: str) -> None:
    import contextlib
    import io
    import time
    import traceback

    from peft_ladder.cli import main

    results = {}
    for item in json.loads(Path(plan_file).read_text()):
        err, out, saved = io.StringIO(), io.StringIO(), dict(os.environ)
        os.environ.update(item["env"])
        start = time.perf_counter()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                status = main(item["argv"])
        except SystemExit as exit_:  # argparse
            status = exit_.code
        except BaseException:  # noqa: BLE001 - a traceback is what the case looks for
            status = RAISED
            err.write(traceback.format_exc())
        finally:
            os.environ.clear()
            os.environ.update(saved)
        results[item["id"]] = {
            "status": status,
            "stderr": err.getvalue(),
            "stdout": out.getvalue(),
            "seconds": round(time.perf_counter() - start, 2),
        }
        print(f"{results[item['id']]['seconds']:6.2f}s  {status!s:>6}  {item['id']}", flush=True)
    Path(results_file).write_text(json.dumps(results))


if __name__ == "__main__":
    _drive(sys.argv[1], sys.argv[2])
