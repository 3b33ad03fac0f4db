"""Recipes: every shipped one validates; bad keys and types are named with file and dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from peft_ladder.config import ConfigError, dump_config, load_config

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
RECIPES = [r for r in RECIPES if "accelerate" not in r.parts]


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(r.relative_to(r.parents[1])) for r in RECIPES])
def test_every_shipped_recipe_validates_and_starts_with_its_command(recipe):
    config = load_config(recipe)
    assert (config.strategy is None) != (config.ladder is None)
    assert config.strategy_name() if config.ladder is None else config.ladder.rungs
    head = recipe.read_text().splitlines()[:6]
    commands = ("peft_ladder/train.py --recipe", "peft-ladder ladder --recipe")
    assert any(any(c in line for c in commands) and recipe.name in line for line in head)
    assert load_config(None, [], **__import__("yaml").safe_load(dump_config(config))) == config


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.epochs=many", "train.epochs"),
        ("trian.epochs=1", "trian"),
        ("strategy.rank=4", "strategy"),
        ("strategy.name=nope", "strategy"),
        ("data.max_length=2", "data.max_length"),
        ("train.backbone_lr=1.0", "train"),
    ],
)
def test_bad_values_name_the_file_and_key(override, key):
    recipe = RECIPES[0]
    with pytest.raises(ConfigError) as err:
        load_config(recipe, [override])
    assert str(recipe) in str(err.value) and f"  {key}" in str(err.value)


def test_override_must_be_key_value():
    with pytest.raises(ConfigError):
        load_config(RECIPES[0], ["train.epochs"])


ACCELERATE_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "recipes" / "accelerate").glob("*.yaml"))


@pytest.mark.parametrize("path", ACCELERATE_CONFIGS, ids=[p.name for p in ACCELERATE_CONFIGS])
def test_example_accelerate_configs_are_valid_accelerate_configs(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and "accelerate launch --config_file" in path.read_text()


def test_mixed_precision_no_is_the_string_not_yaml_false(tmp_path):
    assert load_config(RECIPES[0], ["train.mixed_precision=no"]).train.mixed_precision == "no"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(Path(RECIPES[0]).read_text() + "\n")
    with_no = load_config(recipe, ["train.mixed_precision=bf16"]).model_dump()
    with_no["train"]["mixed_precision"] = False  # what YAML makes of `mixed_precision: no`
    from peft_ladder.config import validate_config

    assert validate_config(with_no).train.mixed_precision == "no"


def test_a_bad_value_from_the_command_line_is_said_to_come_from_there(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("backbone: {name: minilm}\ndata: {dataset: stdlib_docstrings}\ntrain: {batch_size: 0}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(recipe, ["train.epochs=abc"])
    lines = str(refused.value).splitlines()
    assert any(line.strip().startswith("train.epochs") and "command line" in line for line in lines)
    assert any(line.strip().startswith("train.batch_size") and "command line" not in line for line in lines)
