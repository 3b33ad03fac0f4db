"""What a pip user gets: the wheel carries every module, the templates and the example recipes, and a recipe is
found by name."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from peft_ladder.config import ConfigError, load_config
from peft_ladder.recipe_files import recipe_names

REPO = Path(__file__).resolve().parents[1]


def _packages() -> list[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_folder_is_a_listed_package():
    code = {
        ".".join(p.relative_to(REPO).parts)
        for p in (REPO / "peft_ladder").rglob("*")
        if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))
    }
    recipes = {"peft_ladder.recipes"} | {
        f"peft_ladder.recipes.{p.name}" for p in (REPO / "recipes").iterdir() if p.is_dir()
    }
    assert code | {"peft_ladder"} | recipes == set(_packages())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("*.whl")
    with zipfile.ZipFile(built) as archive:
        return set(archive.namelist())


def test_the_wheel_carries_modules_templates_and_recipes(wheel):
    tracked = subprocess.run(["git", "ls-files", "peft_ladder"], cwd=REPO, capture_output=True, text=True).stdout
    for name in tracked.split():
        assert name in wheel, name
    for name in recipe_names():
        assert f"peft_ladder/recipes/{name}.yaml" in wheel, name
    assert "peft_ladder/recipes/accelerate/ddp.yaml" in wheel


def test_a_packaged_recipe_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the checkout: the name, not a relative path, finds it
    assert load_config("minilm_ladder").ladder is not None
    assert load_config("tiny/minilm_lora.yaml").strategy["name"] == "lora"
    assert load_config("vit/lora").strategy["name"] == "lora"
    with pytest.raises(ConfigError, match="bert/lora"):
        load_config("lora")  # three folders hold a lora recipe
    with pytest.raises(ConfigError, match="tiny/minilm_ladder"):
        load_config("nope")  # the message lists the names
    with pytest.raises(ConfigError):
        load_config("accelerate/ddp")  # an Accelerate config, not a recipe


LIGHT = """
import contextlib, io, sys
import peft_ladder
from peft_ladder.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["--help"]) == 0 and main(["--version"]) == 0 and main(["recipe", "list"]) == 0
    for command in ("train", "ladder", "push", "export", "recipe"):
        try:
            main([command, "--help"])
        except SystemExit as done:
            assert done.code == 0, command
heavy = sorted(m for m in ("torch", "transformers", "peft", "accelerate", "timm", "datasets") if m in sys.modules)
print(",".join(heavy))
"""


def test_import_and_every_help_load_no_training_stack():
    done = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == ""  # none of the heavy libraries was imported


def test_every_public_name_resolves():
    import peft_ladder

    assert peft_ladder.__all__ == sorted(peft_ladder._LAZY)
    for name in peft_ladder.__all__:
        assert getattr(peft_ladder, name) is not None, name
