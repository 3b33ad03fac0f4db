"""`push_to_hub: true` in a recipe: a single-rung run and a ladder push their published artifact once they have
finished (a ladder's trials never push), the four push keys are checked with the recipe, and a push that fails
after a finished run says so and how to push again."""

from __future__ import annotations

import pytest
from fake_hub import FakeHub
from hub_env import LADDER_REPO

from peft_ladder.cli import main as cli
from peft_ladder.config import ConfigError, load_config
from peft_ladder.hub.portable import shared_files
from peft_ladder.hub.push import PushError, push_run

TINY = "recipes/tiny/minilm_1layer.yaml"


def test_a_ladder_pushes_once_when_it_finishes(fake_hub, ladder_run):
    artifact = ladder_run.run_dir / "artifact"
    repo = fake_hub.repos[LADDER_REPO]
    assert len(repo.commits) == 2  # the repo's first commit, then the ladder's one push (no trial pushed)
    expected = {f"rung/{p.relative_to(artifact).as_posix()}" for p in shared_files(artifact)}
    pushed = set(fake_hub.files(LADDER_REPO))
    assert {n for n in pushed if n.startswith("rung/")} == expected and "model.safetensors" in pushed
    assert "rung/transfer_note.json" in expected  # pushed after the note was written into the artifact


@pytest.mark.slow
def test_a_recipe_with_push_to_hub_pushes_when_the_run_finishes(hub, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_TOKEN", FakeHub.TOKEN)
    out = tmp_path / "run"
    overrides = [
        "push_to_hub=true",
        "hub_model_id=user/minilm-probe",
        "hub_private=true",
        "hub_revision=first-try",
        f"output_dir={out}",
    ]
    assert cli(["train", "--recipe", TINY, *overrides]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("pushed ") and "user/minilm-probe" in printed[-1]
    repo = hub.repos["user/minilm-probe"]
    assert repo.private
    pushed = hub.files("user/minilm-probe", "first-try")
    expected = {f"rung/{p.relative_to(out / 'artifact').as_posix()}" for p in shared_files(out / "artifact")}
    assert {n for n in pushed if n.startswith("rung/")} == expected and "rung/delta.safetensors" in pushed
    assert "model.safetensors" in pushed and "modeling_peft_ladder.py" in pushed  # the mean-pooled export
    assert set(hub.files("user/minilm-probe")) == {".gitattributes"}  # main untouched


def test_a_failed_push_after_a_run_says_the_run_finished(hub, ladder_run, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FakeHub.TOKEN)
    config = load_config(TINY, ["push_to_hub=true", "hub_model_id=forbidden/model", "hub_revision=v2"])
    with pytest.raises(PushError) as caught:
        push_run(ladder_run.run_dir, config)
    message = str(caught.value)
    assert "HTTP 403" in message and "the run finished" in message
    assert f"peft-ladder push {ladder_run.run_dir} --repo-id forbidden/model --revision v2" in message
    assert "\n" not in message and FakeHub.TOKEN not in message


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["push_to_hub=true"], "hub_model_id: push_to_hub is true but names no repo"),
        (["hub_model_id=no-namespace"], "hub_model_id: not a Hub repo id"),
        (["hub_model_id=user/bad name"], "hub_model_id: not a Hub repo id"),
        (["hub_token=hf_x"], "hub_token"),  # the token is never a recipe key
    ],
)
def test_push_keys_are_checked_with_the_recipe(overrides, key):
    with pytest.raises(ConfigError, match=key):
        load_config(TINY, overrides)
    config = load_config(TINY, ["push_to_hub=true", "hub_model_id=user/name"])
    assert (config.hub_private, config.hub_revision) == (False, None)
