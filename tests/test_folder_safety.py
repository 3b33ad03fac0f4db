"""No run destroys another, and what we read back is checked before it is trusted: a live run owns its folder
(a second run into it stops at once, naming the owner), `--overwrite` removes only what a run of ours wrote
and never follows a symlink out, an export never writes into the run it reads, a damaged or mismatched
artifact is refused naming the file, and a full disk is one line that leaves no temporary files behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peft_ladder import apply_strategy, load_adapted, load_backbone, save_adapted
from peft_ladder.artifact_checks import ArtifactDamaged
from peft_ladder.io import DiskFull
from peft_ladder.run_folder import OutputDirInUse, claim, settle
from peft_ladder.run_lock import FolderLocked, lock_folder, release

REPO = Path(__file__).resolve().parents[1]
TINY = "recipes/tiny/minilm_1layer.yaml"
LABELS = ["a", "b", "c"]
QUICK = ["train.epochs=1", "data.max_samples.train=32", "data.max_samples.validation=32"]


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "peft_ladder.cli", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd
    )


def _one_error(done: subprocess.CompletedProcess) -> str:
    """The single `error:` paragraph of a refused command (exit 2, no traceback)."""
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def _hashes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def artifact_run(tiny_dirs, tmp_path) -> Path:
    """A train-run folder of ours holding a tiny BERT probe artifact."""
    run = tmp_path / "run"
    claim(run, "train", overwrite=False, resume=False)
    release(run)
    adapted = apply_strategy(load_backbone(str(tiny_dirs["hf_bert"]), label_names=LABELS), "linear_probe")
    save_adapted(adapted, run / "artifact")
    return run


# ---- a live run owns its folder


HOLD = """
import sys, time
from pathlib import Path
from peft_ladder.run_lock import lock_folder
lock_folder(Path(sys.argv[1]), "train run")
print("held", flush=True)
time.sleep(120)
"""


def test_a_live_run_owns_its_folder_and_a_dead_one_does_not(artifact_run):
    source = shutil.copytree(artifact_run / "artifact", artifact_run.parent / "another_artifact")
    before = _hashes(artifact_run)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(artifact_run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        error = _one_error(_cli("train", "--recipe", TINY, f"output_dir={artifact_run}", "--overwrite"))
        assert str(holder.pid) in error and time.monotonic() - started < 60  # at once, naming the owner
        assert str(holder.pid) in _one_error(_cli("export", str(source), "--out", str(artifact_run)))
        # A refused run leaves the live run's list as it is (only the holder narrows it to what it wrote).
        listed = (artifact_run / ".peft_ladder_run.json").read_text()
        settle(artifact_run)
        assert (artifact_run / ".peft_ladder_run.json").read_text() == listed
        # Nor is a run read while it is alive: its artifact may be half-way through being replaced.
        for read in (artifact_run, artifact_run / "artifact"):
            done = _cli("export", str(read), "--out", str(artifact_run.parent / "while_live"))
            assert str(holder.pid) in _one_error(done)
        with pytest.raises(FolderLocked):
            lock_folder(artifact_run, "train run")
    finally:
        holder.kill()
        holder.wait()
    assert _hashes(artifact_run) == {**before, **{k: v for k, v in _hashes(artifact_run).items() if k.startswith(".")}}
    lock_folder(artifact_run, "train run")  # the owner is gone: its lock went with it
    release(artifact_run)


def test_removing_the_lock_file_of_a_live_run_does_not_let_a_second_run_in(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        (folder / ".peft_ladder.lock").unlink()
        with pytest.raises(FolderLocked, match="removed"):
            lock_folder(folder, "train run")
        from peft_ladder.run_lock import locked_by_another

        assert locked_by_another(folder) is not None
    finally:
        holder.kill()
        holder.wait()
    lock_folder(folder, "train run")  # the owner is gone: the folder is free
    release(folder)


def test_two_runs_started_together_into_one_folder(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--recipe", TINY, f"output_dir={out}", *QUICK]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "peft_ladder.cli", *args],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    done = [subprocess.CompletedProcess(r.args, r.wait(timeout=300), *r.communicate()) for r in runs]
    assert sorted(d.returncode for d in done) == [0, 2], [d.stderr[-2000:] for d in done]
    loser = next(d for d in done if d.returncode == 2)
    error = _one_error(loser)
    assert "in use" in error or "already holds" in error  # refused at the lock, or by the first run's files
    assert load_adapted(out / "artifact") is not None  # the winner's results are whole


# ---- --overwrite removes only what a run of ours wrote


def test_overwrite_removes_a_symlink_as_a_link_and_never_what_it_points_to(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    run = tmp_path / "run"
    claim(run, "train", overwrite=False, resume=False)  # an earlier run of ours, as its list says
    release(run)
    (run / "logs").symlink_to(outside, target_is_directory=True)
    (run / "metrics.json").write_text("{}")
    (run / "notes_of_mine.txt").write_text("not a run's")
    done = _cli("train", "--recipe", TINY, f"output_dir={run}", "--overwrite", *QUICK)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (outside / "precious.txt").read_text() == "keep me"
    assert not (run / "logs").is_symlink() and (run / "artifact").is_dir()  # the link went, the new run is whole
    assert (run / "notes_of_mine.txt").read_text() == "not a run's"
    assert not [p for p in run.iterdir() if p.name.startswith(".peft_ladder_old-")]  # nothing half-cleared


def test_a_folder_no_run_wrote_is_never_cleared_even_with_overwrite(tmp_path):
    folder = tmp_path / "mine"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "experiment.txt").write_text("my own logs")
    (folder / "config.yaml").write_text("lr: 0.1  # my own experiment's\n")
    before = _hashes(folder)
    error = _one_error(_cli("train", "--recipe", TINY, f"output_dir={folder}", "--overwrite", *QUICK))
    assert "logs" in error and "config.yaml" in error
    assert _hashes(folder) == before  # not even a lock file or a run list left behind
    with pytest.raises(OutputDirInUse, match="logs"):  # the same through the Python API
        claim(folder, "train", overwrite=True, resume=False)
    release(folder)


def test_a_users_own_recipe_and_logs_in_the_folder_are_never_taken_for_a_run(tmp_path):
    """A recipe kept in the output folder names a backbone, as a run's resolved config does: it is still the user's."""
    folder = tmp_path / "mine"
    (folder / "logs").mkdir(parents=True)
    (folder / "logs" / "run.txt").write_text("my own notes")
    shutil.copyfile(REPO / TINY, folder / "config.yaml")
    before = _hashes(folder)
    done = _cli("train", "--recipe", str(folder / "config.yaml"), f"output_dir={folder}", "--overwrite", *QUICK)
    assert "config.yaml" in _one_error(done)
    assert _hashes(folder) == before


def test_files_put_into_a_finished_run_later_are_never_the_runs(tmp_path):
    """A run's list is narrowed at its end to what it wrote: a `logs/` added since is the user's, and a run that
    would write into it is refused instead of removing it or writing among the user's files."""
    run = tmp_path / "run"
    done = _cli("train", "--recipe", TINY, f"output_dir={run}", "log_with=none", *QUICK)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = json.loads((run / ".peft_ladder_run.json").read_text())["writes"]
    assert "artifact" in listed and "metrics.json" in listed and "logs" not in listed
    (run / "logs").mkdir()
    (run / "logs" / "mine.txt").write_text("my own notes")
    for flag in ("--overwrite", "--resume"):
        assert "logs" in _one_error(_cli("train", "--recipe", TINY, f"output_dir={run}", flag, *QUICK))
    assert (run / "logs" / "mine.txt").read_text() == "my own notes" and (run / "artifact").is_dir()


# ---- an export never writes into the run it reads


@pytest.mark.parametrize("where", ["the run", "its artifact", "inside the artifact", "the run's parent"])
def test_export_never_writes_into_the_run_it_reads(artifact_run, where):
    out = {
        "the run": artifact_run,
        "its artifact": artifact_run / "artifact",
        "inside the artifact": artifact_run / "artifact" / "export",
        "the run's parent": artifact_run.parent,
    }[where]
    before = _hashes(artifact_run)
    error = _one_error(_cli("export", str(artifact_run), "--out", str(out), "--overwrite"))
    assert "--out" in error
    assert _hashes(artifact_run) == before


# ---- what we read back is checked


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_weights_that_do_not_fit_the_base_they_name_are_refused(artifact_run):
    meta = artifact_run / "artifact" / "peft_ladder.json"
    _edit_json(meta, lambda d: d["backbone"]["model_kwargs"].update(num_hidden_layers=1))  # saved with 2 layers
    with pytest.raises(ArtifactDamaged, match="peft_ladder.json"):
        load_adapted(artifact_run / "artifact")
    error = _one_error(_cli("export", str(artifact_run), "--out", str(artifact_run.parent / "out")))
    assert "peft_ladder.json" in error and not (artifact_run.parent / "out").exists()


@pytest.mark.parametrize("damage", ["truncated weights", "changed weights", "missing weights", "cut-off json"])
def test_a_damaged_artifact_is_refused_naming_the_file(artifact_run, damage):
    folder = artifact_run / "artifact"
    weights, meta = folder / "delta.safetensors", folder / "peft_ladder.json"
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:-8])
    elif damage == "changed weights":
        content = bytearray(weights.read_bytes())
        content[-1] ^= 0xFF
        weights.write_bytes(bytes(content))
    elif damage == "missing weights":
        weights.unlink()
    else:
        meta.write_text(meta.read_text()[:100])
    named = meta if damage == "cut-off json" else weights
    with pytest.raises(ArtifactDamaged, match=named.name):
        load_adapted(folder)
    assert named.name in _one_error(_cli("export", str(artifact_run), "--out", str(artifact_run.parent / "out")))


def test_a_damaged_adapter_without_a_manifest_is_named_not_a_traceback(tiny_dirs, tmp_path):
    """An artifact from before the weights manifest: its adapter file is read by us first, so a cut-off one is an
    error naming it; one that lacks tensors its config declares (on the right base) is named too."""
    adapted = apply_strategy(load_backbone(str(tiny_dirs["hf_bert"]), label_names=LABELS, pooling="pooler"), "lora")
    folder = Path(save_adapted(adapted, tmp_path / "cut"))
    meta = json.loads((folder / "peft_ladder.json").read_text())
    del meta["weights"]
    (folder / "peft_ladder.json").write_text(json.dumps(meta))
    lacking = tmp_path / "lacking"
    shutil.copytree(folder, lacking)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ArtifactDamaged, match="adapter_model.safetensors"):
        load_adapted(folder)
    assert "adapter_model.safetensors" in _one_error(_cli("export", str(folder), "--out", str(tmp_path / "out")))
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(lacking / "adapter_model.safetensors"))
    dropped = next(k for k in tensors if "lora_A" in k)
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(lacking / "adapter_model.safetensors"))
    with pytest.raises(ArtifactDamaged, match="lacks tensors"):
        load_adapted(lacking)


# ---- a full disk


def test_a_full_disk_while_saving_is_one_error_and_leaves_nothing_behind(tiny_dirs, tmp_path, monkeypatch):
    adapted = apply_strategy(load_backbone(str(tiny_dirs["hf_bert"]), label_names=LABELS), "linear_probe")
    earlier = Path(save_adapted(adapted, tmp_path / "artifact"))
    before = _hashes(earlier)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("peft_ladder.artifacts.save_file", no_space)
    with pytest.raises(DiskFull, match=str(tmp_path)):
        save_adapted(adapted, tmp_path / "artifact", overwrite=True)
    assert _hashes(earlier) == before  # the earlier artifact is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]  # no temporary folder left


def test_running_out_of_space_is_told_apart_from_other_failures(tmp_path):
    from peft_ladder.io import disk_full_is_a_user_error

    with pytest.raises(DiskFull, match="cache.dir"):
        with disk_full_is_a_user_error(tmp_path, "the activation cache", hint="set cache.dir elsewhere"):
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(PermissionError):  # another OSError stays what it is
        with disk_full_is_a_user_error(tmp_path, "the artifact"):
            raise PermissionError(errno.EACCES, "denied")
    with pytest.raises(RuntimeError, match="unexpected pos"):  # torch's short write, with room on the disk: a bug
        with disk_full_is_a_user_error(tmp_path, "the checkpoint"):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos")


@pytest.mark.parametrize("damage", ["cut-off sidecar", "truncated arrow"])
def test_a_damaged_cache_entry_is_extracted_again_not_trusted(tmp_path, damage):
    from peft_ladder.cache.store import ActivationStore, StoredMeta

    store = ActivationStore(tmp_path)
    batch = {"activations": [[0.5] * 4] * 3, "length": [1, 1, 1], "labels": [0, 1, 2]}
    meta = StoredMeta(row_shape=[4], tokens=False, rows=0, describe="test")
    store.write("key", [batch], lambda _first: meta, total_rows=3, max_bytes=2**20)
    assert store.load("key") is not None
    arrow, sidecar = tmp_path / "key.arrow", tmp_path / "key.json"
    if damage == "cut-off sidecar":
        sidecar.write_text(sidecar.read_text()[:10])
    else:
        arrow.write_bytes(arrow.read_bytes()[:64])
    assert store.load("key") is None  # a miss: the caller extracts the rows again
    assert not arrow.exists() and not sidecar.exists()


TRY_LOCK = """
import sys
from pathlib import Path
from peft_ladder.run_lock import FolderLocked, lock_folder
try:
    lock_folder(Path(sys.argv[1]), "train run")
except FolderLocked:
    sys.exit(3)
"""


def test_a_forked_worker_does_not_keep_the_lock_after_its_run_lets_go(tmp_path):
    """DataLoader workers are forked children: the run's lock must end with the run, not with its workers."""
    folder = tmp_path / "run"
    lock_folder(folder, "train run")
    child = os.fork()
    if child == 0:  # a worker outliving its run
        time.sleep(20)
        os._exit(0)
    try:
        try_lock = [sys.executable, "-c", TRY_LOCK, str(folder)]
        assert subprocess.run(try_lock, timeout=60).returncode == 3  # the run holds it
        release(folder)
        assert subprocess.run(try_lock, timeout=60).returncode == 0  # free, though the worker lives on
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_a_run_from_before_the_run_list_is_still_recognised(tmp_path):
    """A ladder folder written before runs listed their files: --resume continues it, and without a flag it is
    refused as a ladder run, never cleared as someone else's files."""
    old = tmp_path / "old_ladder"
    (old / "rungs" / "00_linear_probe").mkdir(parents=True)
    (old / "sessions.json").write_text("[]")
    (old / "transfer_note.json").write_text(json.dumps({"decision": {}, "rungs": []}))
    with pytest.raises(OutputDirInUse, match="already holds a ladder run"):
        claim(old, "ladder", overwrite=False, resume=False)
    assert claim(old, "ladder", overwrite=False, resume=True) == []
    release(old)
    assert (old / "rungs" / "00_linear_probe").is_dir()


def test_an_export_over_a_file_with_overwrite_leaves_nothing_aside(artifact_run, tmp_path):
    target = tmp_path / "was_a_file"
    target.write_text("old")
    assert _cli("export", str(artifact_run), "--out", str(target), "--overwrite").returncode == 0
    assert target.is_dir() and not [p for p in tmp_path.iterdir() if p.name.startswith(".was_a_file")]


def test_export_overwrite_replaces_only_an_earlier_export(artifact_run, tmp_path):
    """A run folder, or a folder of the user's files, at --out is refused even with --overwrite; an earlier export
    (its marker) or an empty folder is replaced."""
    other = tmp_path / "other_run"
    claim(other, "ladder", overwrite=False, resume=False)
    release(other)
    (other / "transfer_note.json").write_text("{}")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own")
    for out in (other, mine):
        before = _hashes(out)
        assert out.name in _one_error(_cli("export", str(artifact_run), "--out", str(out), "--overwrite"))
        assert _hashes(out) == before
    from peft_ladder.hub.export import export

    export_dir = tmp_path / "export"
    (tmp_path / "empty").mkdir()
    for out in (export_dir, export_dir, tmp_path / "empty"):  # fresh, then over its own earlier export, then empty
        assert (export(artifact_run, out, overwrite=True) / "config.json").is_file()


def test_resume_with_nothing_to_resume_says_so_before_any_work(tmp_path):
    done = _cli("train", "--recipe", TINY, f"output_dir={tmp_path / 'fresh'}", "--resume")
    assert "checkpoints" in _one_error(done)
    assert "cache:" not in done.stderr + done.stdout  # said before the data, the model and the cache were built
    claim(tmp_path / "fresh", "train", overwrite=False, resume=False)  # and the folder is still free for a run
    release(tmp_path / "fresh")


def test_an_export_beside_an_artifact_in_a_plain_folder_is_allowed(tiny_dirs, tmp_path):
    """Only a run's folder is protected: an artifact saved into a folder of the user's own can be exported next
    to it."""
    from peft_ladder.hub.export import export

    adapted = apply_strategy(load_backbone(str(tiny_dirs["hf_bert"]), label_names=LABELS), "linear_probe")
    artifact = Path(save_adapted(adapted, tmp_path / "artifact"))
    assert export(artifact, tmp_path / "export").is_dir()
