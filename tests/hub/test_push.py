"""`push_to_hub` / `peft-ladder push` against the fake Hub (`fake_hub.py`): what goes up (shared files only, the
card), that a pushed rung loads back by repo id in a fresh process (peft_ladder, and stock peft for the adapter
rung) with the local logits, dry runs, revisions, visibility, and the one-line failures that leave the run
folder byte-identical and never show the token."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fake_hub import FakeHub
from hub_env import BASE_REPO, child_env, folder_bytes, start_cli
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from peft_ladder import load_adapted
from peft_ladder.cli import main as cli
from peft_ladder.hub.portable import LOCAL_FILE, RUNG_FOLDER, shared_files
from peft_ladder.hub.push import PushError, push_to_hub, rung_artifact

pytestmark = pytest.mark.slow

# A fresh process: peft_ladder loads each pushed revision by repo id, stock peft the adapter rung on its base's
# Hub id; both download through huggingface_hub from the fake Hub (HF_ENDPOINT, HF_TOKEN in the environment).
LOADER = r"""
import json, sys
import torch
from safetensors.torch import load_file, save_file
from peft import PeftConfig, PeftModel
from transformers import AutoConfig, AutoModelForSequenceClassification
from peft_ladder import load_adapted

repo, batch_file, out = sys.argv[1:]
batch = load_file(batch_file)
logits = {}
with torch.no_grad():
    for name, revision in (("published", None), ("lora", "lora")):
        adapted = load_adapted(repo, revision=revision)  # the default push's rung/ folder, and a raw push
        adapted.model.eval()
        logits[name] = adapted.logits(batch)
    # The default push's top folder: stock transformers alone.
    logits["stock_published"] = AutoModelForSequenceClassification.from_pretrained(repo).eval()(**batch).logits
    base_id = PeftConfig.from_pretrained(repo, revision="lora").base_model_name_or_path
    labels = AutoConfig.from_pretrained(repo, revision="lora")
    base = AutoModelForSequenceClassification.from_pretrained(
        base_id, num_labels=labels.num_labels, id2label=labels.id2label, label2id=labels.label2id,
        ignore_mismatched_sizes=True,
    )
    stock = PeftModel.from_pretrained(base, repo, revision="lora").eval()
    logits["stock_lora"] = stock(**batch).logits
save_file(logits, out)
print(json.dumps({"base": base_id}))
"""


def rung_files(artifact: Path) -> set[str]:
    """Where a default push puts an artifact's shared files."""
    return {f"{RUNG_FOLDER}/{p.relative_to(artifact).as_posix()}" for p in shared_files(artifact)}


def _batch(artifact, texts: list[str]) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(artifact))
    return dict(tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt"))


def _logits(folder, batch) -> torch.Tensor:
    adapted = load_adapted(folder)
    adapted.model.eval()
    with torch.no_grad():
        return adapted.logits(batch)


def test_a_ladder_is_pushed_and_loads_back_by_repo_id(hub, ladder_run, monkeypatch, tmp_path):
    run = ladder_run.run_dir
    monkeypatch.setenv("HF_TOKEN", FakeHub.TOKEN)
    before = folder_bytes(run)
    published = push_to_hub(run, "user/tiny-ladder")
    lora = push_to_hub(run, "user/tiny-ladder", rung="lora", revision="lora", raw=True)
    assert folder_bytes(run) == before  # a push only reads

    # What went up by default: the standalone export at the top, the artifact's shared files in rung/.
    artifact = run / "artifact"
    assert (artifact / LOCAL_FILE).is_file()  # the local-only dotfile is there to be left out
    uploaded = hub.files("user/tiny-ladder")
    assert {n for n in uploaded if n.startswith("rung/")} == rung_files(artifact)
    assert {"config.json", "model.safetensors", "README.md", "tokenizer_config.json"} <= set(uploaded)
    assert "peft_ladder.json" not in uploaded  # the top is a plain transformers model
    assert not [name for name in uploaded if Path(name).name.startswith(".peft_ladder")]
    assert {f.path_in_repo for f in published.plan.files} | {".gitattributes"} == set(uploaded)
    lora_files = hub.files("user/tiny-ladder", "lora")
    assert "adapter_model.safetensors" in lora_files and LOCAL_FILE not in lora_files
    assert lora.plan.source == rung_artifact(run, "lora")
    # Shared files name the base by its Hub id, never by this machine's path.
    for files in (uploaded, lora_files):
        assert str(ladder_run.base_snapshot) not in "".join(c.decode(errors="ignore") for c in files.values())

    # The card, read back from the Hub: metadata the Hub indexes, the note, snippets that name the repo.
    card = ModelCard.load("user/tiny-ladder", token=FakeHub.TOKEN)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert "peft-ladder" in card.data.tags and "transfer-note" in card.data.tags
    assert card.data.base_model == BASE_REPO
    assert 'REPO = "user/tiny-ladder"' in card.text and 'REPO = "REPO"' not in card.text

    # A fresh process loads both revisions by repo id (and the base by its id), with the local logits.
    batch = _batch(artifact, ladder_run.texts)
    save_file(batch, tmp_path / "batch.safetensors")
    expected_logits = {"published": _logits(artifact, batch), "lora": _logits(rung_artifact(run, "lora"), batch)}
    out = tmp_path / "logits.safetensors"
    env = child_env(hub, tmp_path / "child_home", HF_TOKEN=FakeHub.TOKEN)
    done = subprocess.run(
        [sys.executable, "-c", LOADER, "user/tiny-ladder", str(tmp_path / "batch.safetensors"), str(out)],
        cwd=tmp_path,  # not the repo: nothing named like the repo id may be found on disk
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"base": BASE_REPO}
    got = load_file(out)
    torch.testing.assert_close(got["published"], expected_logits["published"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["lora"], expected_logits["lora"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["stock_lora"], expected_logits["lora"], rtol=0, atol=1e-5)
    torch.testing.assert_close(got["stock_published"], expected_logits["published"], rtol=0, atol=1e-5)


def test_dry_run_prints_files_sizes_and_card_and_sends_nothing(hub, ladder_run, capsys):
    run = ladder_run.run_dir
    before, seen = folder_bytes(run), len(hub.requests)
    assert cli(["push", str(run), "--repo-id", "user/dry", "--dry-run"]) == 0  # no token anywhere
    out = capsys.readouterr().out
    assert len(hub.requests) == seen and "user/dry" not in hub.repos
    artifact = run / "artifact"
    for file in shared_files(artifact):
        name = file.relative_to(artifact).as_posix()
        line = next(line for line in out.splitlines() if line.endswith(f"  rung/{name}"))
        if file.suffix not in (".json", ".md"):  # JSON is rewritten portably; the card names the repo
            assert f"{file.stat().st_size:,}" in line
    assert any(line.endswith("  model.safetensors") for line in out.splitlines())  # the export, at the top
    assert LOCAL_FILE not in out
    assert "pipeline_tag:" in out and 'REPO = "user/dry"' in out  # the card, as it would be uploaded
    assert "nothing was uploaded" in out
    assert folder_bytes(run) == before


def test_a_revision_is_a_branch_and_private_reaches_create_repo(hub, ladder_run, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", FakeHub.TOKEN)
    run = ladder_run.run_dir
    seen = len(hub.requests)
    assert cli(["push", str(run), "--repo-id", "user/branched", "--revision", "v1", "--private"]) == 0
    assert "(revision v1," in capsys.readouterr().out
    # create_repo (asked private), create_branch, the listing of what v1 holds, then the commit on v1.
    assert [r.path for r in hub.requests[seen:]] == [
        "/api/repos/create",
        "/api/models/user/branched/branch/v1",
        "/api/models/user/branched/tree/v1",
        "/api/validate-yaml",
        "/api/models/user/branched/preupload/v1",
        "/api/models/user/branched/commit/v1",
    ]
    assert hub.repos["user/branched"].private
    assert "rung/peft_ladder.json" in hub.files("user/branched", "v1")
    assert set(hub.files("user/branched", "main")) == {".gitattributes"}  # main untouched
    # Again on the same branch, now with another rung: the branch exists (409, accepted) and then holds exactly
    # that rung, with the first push's files that the second lacks deleted in the same commit.
    first = set(hub.files("user/branched", "v1"))
    result = push_to_hub(run, "user/branched", rung="lora", revision="v1")
    second = set(hub.files("user/branched", "v1"))
    assert second == {f.path_in_repo for f in result.plan.files} | {".gitattributes"}
    published, lora = rung_files(run / "artifact"), rung_files(rung_artifact(run, "lora"))
    assert "rung/adapter_model.safetensors" in second and first - second == published - lora
    branch_calls = [r for r in hub.requests if r.path == "/api/models/user/branched/branch/v1"]
    assert len(branch_calls) == 2
    # Without --private the namespace's default applies, which on this Hub is public.
    push_to_hub(run, "user/public-one")
    assert not hub.repos["user/public-one"].private


def test_merged_pushes_the_standalone_export(hub, ladder_run, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", FakeHub.TOKEN)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the export's temporary folder, to see it go
    run = ladder_run.run_dir
    before = folder_bytes(run)
    result = push_to_hub(run, "user/merged", rung="lora", merged=True)
    files = hub.files("user/merged")
    assert result.plan.merged and "model.safetensors" in files and "config.json" in files
    assert "adapter_model.safetensors" not in files and "peft_ladder.json" not in files
    assert ModelCard.load("user/merged", token=FakeHub.TOKEN).data.library_name == "transformers"
    assert folder_bytes(run) == before
    assert not list(tmp_path.glob("peft_ladder_push_*"))  # the export's folder is gone


@pytest.mark.parametrize("namespace, status", [("forbidden", 403), ("broken", 500)])
def test_a_refused_push_is_one_line_without_the_token(hub, ladder_run, namespace, status):
    with pytest.raises(PushError) as caught:
        push_to_hub(ladder_run.run_dir, f"{namespace}/model", token=FakeHub.TOKEN)
    message = str(caught.value)
    assert "\n" not in message and f"HTTP {status}" in message and FakeHub.TOKEN not in message


def test_a_token_the_hub_rejects_is_one_line(hub, ladder_run):
    with pytest.raises(PushError, match="HTTP 401") as caught:
        push_to_hub(ladder_run.run_dir, "user/model", token="hf_wrongTokenValue123")
    assert "hf_wrongTokenValue123" not in str(caught.value)


def test_an_unreachable_hub_is_one_line(hub, ladder_run, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(PushError, match="cannot reach the Hub at http://127.0.0.1:9") as caught:
        push_to_hub(ladder_run.run_dir, "user/model", token=FakeHub.TOKEN)
    assert "\n" not in str(caught.value)


def test_rung_errors_name_what_exists(hub, ladder_run):
    with pytest.raises(PushError, match="no rung 'full'.*linear_probe, lora"):
        push_to_hub(ladder_run.run_dir, "user/x", rung="full", dry_run=True)
    with pytest.raises(PushError, match="--rung needs a ladder run folder"):
        push_to_hub(ladder_run.run_dir / "artifact", "user/x", rung="lora", dry_run=True)
    with pytest.raises(PushError, match="holds no peft_ladder artifact"):
        push_to_hub(ladder_run.run_dir / "rungs", "user/x", dry_run=True)


# name: (push arguments, environment, what the one line says). The token is in every case that has one, so each
# also checks that an error never shows it.
FAILURES = {
    "offline": (["--repo-id", "user/offline"], {"HF_TOKEN": FakeHub.TOKEN, "HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE"),
    "no token": (["--repo-id", "user/no-token"], {}, "no Hugging Face token"),
    "bad repo id": (["--repo-id", "not a repo!"], {"HF_TOKEN": FakeHub.TOKEN}, "not a Hub repo id"),
    "refused": (["--repo-id", "forbidden/model", "--token", FakeHub.TOKEN], {}, "HTTP 403"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_cli_failures_are_one_error_line_and_change_nothing(fake_hub, ladder_run, tmp_path, case):
    """Through the CLI in a child process: exit 2, one `error:` line, no traceback, no token, run untouched."""
    args, env, says = FAILURES[case]
    run = ladder_run.run_dir
    before, seen = folder_bytes(run), len(fake_hub.requests)
    process = start_cli(["push", str(run), *args], child_env(fake_hub, tmp_path / "home", **env))
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr and FakeHub.TOKEN not in stdout + stderr
    assert folder_bytes(run) == before
    reached = [r.path for r in fake_hub.requests[seen:]]
    if case == "refused":  # refused at create_repo; then huggingface_hub checks whether the repo exists (404)
        assert reached == ["/api/repos/create", "/api/models/forbidden/model"]
        assert "forbidden/model" not in fake_hub.repos
    else:
        assert reached == []


def test_the_token_lands_in_no_file_and_no_output(hub, fake_hub, ladder_run, tmp_path, monkeypatch, capfd):
    """A push through the CLI in a child process with the token in HF_TOKEN, and one in this process with
    --token; then a scan of their output, of every file under the run folder and the child's Hugging Face home,
    and of what reached the Hub."""
    run = ladder_run.run_dir
    home = tmp_path / "home"
    process = start_cli(
        ["push", str(run), "--repo-id", "user/by-env"], child_env(fake_hub, home, HF_TOKEN=FakeHub.TOKEN)
    )
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert stdout.startswith("pushed ") and FakeHub.TOKEN not in stdout + stderr
    assert cli(["push", str(run), "--repo-id", "user/by-arg", "--rung", "lora", "--token", FakeHub.TOKEN]) == 0
    out, err = capfd.readouterr()
    assert out.startswith("pushed ") and FakeHub.TOKEN not in out + err
    for folder in (run, home):
        for name, content in folder_bytes(folder).items():
            assert FakeHub.TOKEN.encode() not in content, name
    for repo in ("user/by-env", "user/by-arg"):
        assert not any(FakeHub.TOKEN.encode() in c for c in fake_hub.files(repo).values())


def test_export_command_writes_a_folder_and_refuses_to_overwrite(ladder_run, tmp_path, capsys):
    out = tmp_path / "standalone"
    assert cli(["export", str(ladder_run.run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "config.json").is_file() and (out / "README.md").is_file()
    assert cli(["export", str(ladder_run.run_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "exists" in err[0]
    assert cli(["export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert "holds no peft_ladder artifact" in capsys.readouterr().err


def test_help_lists_push_and_export(capsys):
    assert cli(["--help"]) == 0
    out = capsys.readouterr().out
    assert "push" in out and "export" in out
    with pytest.raises(SystemExit):
        cli(["push", "--help"])
    assert "--dry-run" in capsys.readouterr().out


def test_no_pushed_file_and_no_note_holds_a_path_of_this_machine(hub, ladder_run, monkeypatch):
    """Every file of a default push and a raw one, byte for byte, and every string field of their JSON files and
    of the run's own transfer note: no absolute path, no trace of this machine's folders."""
    import os

    monkeypatch.setenv("HF_TOKEN", FakeHub.TOKEN)
    run = ladder_run.run_dir
    push_to_hub(run, "user/paths")
    push_to_hub(run, "user/paths", rung="lora", revision="raw", raw=True)
    machine = {str(run.resolve().parents[1]), str(Path.home()), sys.prefix, str(ladder_run.base_snapshot)}
    files = {**hub.files("user/paths"), **{f"raw/{k}": v for k, v in hub.files("user/paths", "raw").items()}}
    files["transfer_note.json (run)"] = (run / "transfer_note.json").read_bytes()
    files["transfer_note.md (run)"] = (run / "transfer_note.md").read_bytes()

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    for name, content in files.items():
        for root in machine:
            assert root.encode() not in content, (name, root)
        if name.endswith(".json") or name.endswith(".json (run)"):
            for text in strings(json.loads(content)):
                assert not os.path.isabs(text), (name, text)
