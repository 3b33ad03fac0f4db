"""`push_to_hub`: a rung on the Hugging Face Hub, as a model repo that stock tools and `load_adapted("user/name")`
load.

What goes up by default is the rung's standalone `export` (adapters merged, deltas folded: what stock transformers
or timm load to the same logits, with the transfer note in its card) and, in `rung/`, the rung's own files as
`shared_files` lists them (never the local-only dotfile), base names made portable; `merged=True` leaves
`rung/` out, `raw=True` pushes the rung's own files alone. The revision then holds exactly those files (files an earlier push left
there and this one lacks are deleted in the same commit, so the repo never mixes two rungs). One commit:
`create_repo(exist_ok=True)`, `create_branch` for a revision other than main, `create_commit`.

The token comes from the argument, `HF_TOKEN` or the saved login (`huggingface_hub.get_token`); it is held in
memory for the requests only and never written, logged, put on the card or into an error message. Every failure
the user can fix (offline, no token, a bad repo id, a refused upload) is a `PushError` with one line, raised
before anything local is touched: a push only reads the artifact (an export goes to a temporary folder).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ladder.artifact_checks import read_meta
from peft_ladder.backbones.loader import ARTIFACT_FILE
from peft_ladder.hub.export import artifact_folder, export
from peft_ladder.hub.portable import RUNG_FOLDER, copy_shared, shared_files

if TYPE_CHECKING:
    from huggingface_hub.errors import HfHubHTTPError

    from peft_ladder.config import RunConfig

CARD = "README.md"
NOTE_FILE = "transfer_note.json"
# The card's usage snippets start with `REPO = "REPO"`; the pushed card names its repo instead.
CARD_REPO_LINE = 'REPO = "REPO"'
DEFAULT_REVISION = "main"
# Files a new Hub repo is created with; a push keeps them.
HUB_OWN_FILES = {".gitattributes"}


class PushError(ValueError):
    """A push that cannot happen or was refused; the message is one line and never holds the token."""


@dataclass(frozen=True)
class PushFile:
    path_in_repo: str
    size: int


@dataclass(frozen=True)
class PushPlan:
    """What a push sends: the files (with the card as uploaded) and where to."""

    source: Path  # the artifact folder the files come from (or were exported from)
    repo_id: str
    revision: str
    private: bool
    merged: bool  # the standalone export is at the top (False: the rung's own files are)
    files: tuple[PushFile, ...]
    card: str | None

    def describe(self) -> str:
        """The dry run's report: destination, each file with its size, the total and the card."""
        total = sum(f.size for f in self.files)
        lines = [
            f"dry run: {len(self.files)} files ({human_size(total)}) from {self.source}"
            + (" (standalone export)" if self.merged else "")
            + f" would go to {self.repo_id} (revision {self.revision}"
            + (", private" if self.private else "")
            + "); nothing was uploaded.",
            "",
        ]
        width = max((len(f"{f.size:,}") for f in self.files), default=1)
        lines += [f"  {f.size:>{width},}  {f.path_in_repo}" for f in self.files]
        lines += ["", f"--- {CARD} ---", self.card if self.card is not None else "(no model card)"]
        return "\n".join(lines)


@dataclass(frozen=True)
class PushResult:
    plan: PushPlan
    url: str | None  # the repo's page; None for a dry run
    commit: str | None

    def summary(self) -> str:
        if self.url is None:
            return self.plan.describe()
        total = sum(f.size for f in self.plan.files)
        return (
            f"pushed {len(self.plan.files)} files ({human_size(total)}) to {self.url} "
            f"(revision {self.plan.revision}, commit {(self.commit or '?')[:12]})"
        )


def push_to_hub(
    path: str | Path,
    repo_id: str,
    *,
    rung: str | None = None,
    raw: bool = False,
    merged: bool = False,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    base: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Push a run's published artifact (or one ladder rung's, or its merged export) to a Hub model repo.

    Args:
        path: a train / ladder run folder (`output_dir`) or an artifact folder.
        repo_id: `user/name` or `org/name`; created when missing.
        rung: a ladder rung id (or `scratch`): push that rung instead of the recommended one.
        raw: push the rung's own files alone (adapter, delta or full layout; `load_adapted` reads them), not its
            standalone export.
        merged: push the standalone export alone, without the rung's own files in `rung/`.
        private: create the repo private (otherwise the namespace's default; an existing repo keeps its own).
        revision: the branch to commit to, created from main when missing (default main).
        token: a Hub token with write access; default `HF_TOKEN`, then the saved login.
        dry_run: plan only: no token, no request, nothing uploaded (`result.summary()` describes it).
        base: the base checkpoint's folder for the export, when the artifact's base was a folder elsewhere.
        commit_message: default names the rung and the strategy.

    Returns:
        The plan and, unless `dry_run`, the repo url and the commit id.

    Raises:
        PushError: with one line saying what to fix.
    """
    repo_id = check_repo_id(repo_id)
    if raw and merged:
        raise PushError("--raw pushes the rung's own files and --merged only its export: choose one (or neither).")
    revision = revision or DEFAULT_REVISION
    source = _source(path, rung)
    if not dry_run:
        check_online()
        token = resolve_token(token)
    read_meta(source / ARTIFACT_FILE)  # a damaged artifact is named before anything is staged or sent
    with _staged(source, raw=raw, with_rung=not merged, base=base, token=token) as folder:
        plan = plan_push(folder, source, repo_id, revision=revision, private=private, merged=not raw)
        if dry_run:
            return PushResult(plan, None, None)
        message = commit_message or _default_message(source, rung, raw)
        url, commit = _upload(plan, folder, token, message)
    return PushResult(plan, url, commit)


def push_run(output_dir: str | Path, config: RunConfig) -> PushResult:
    """The recipe's `push_to_hub: true`: push a finished run's (or ladder's) published artifact to
    `hub_model_id`. A failure says that the run itself finished, and how to push it again."""
    assert config.hub_model_id is not None  # RunConfig.problems() refuses push_to_hub without it
    try:
        return push_to_hub(output_dir, config.hub_model_id, private=config.hub_private, revision=config.hub_revision)
    except PushError as err:
        again = f"peft-ladder push {output_dir} --repo-id {config.hub_model_id}"
        if config.hub_revision:
            again += f" --revision {config.hub_revision}"
        raise PushError(f"{err} (the run finished and its artifact is saved; push it again with `{again}`)") from err


def check_repo_id(repo_id: str) -> str:
    """`repo_id` when it is a Hub model id with a namespace (`user/name`), else a PushError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        pass
    else:
        if repo_id.count("/") == 1:
            return repo_id
    raise PushError(
        f"{repo_id!r} is not a Hub repo id: use user/name or org/name (letters, digits, '-', '_', '.'; at most "
        "96 characters)."
    )


def check_online() -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise PushError(
            "HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push (--dry-run shows what would go)."
        )


def resolve_token(token: str | None) -> str:
    """The token to push with: the argument, else `HF_TOKEN`, else the saved login."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PushError(
            "no Hugging Face token: set HF_TOKEN, run `hf auth login`, or pass --token (a token with write access)."
        )
    return token


def rung_artifact(run_dir: Path, rung: str) -> Path:
    """A ladder rung's own artifact folder, as the run's transfer note records it."""
    note_file = run_dir / NOTE_FILE
    # A published artifact carries a portable copy of the note, whose paths are folder names only.
    if (run_dir / ARTIFACT_FILE).is_file() or not note_file.is_file():
        raise PushError(f"--rung needs a ladder run folder (its output_dir, with {NOTE_FILE}); {run_dir} is not one.")
    try:
        note = json.loads(note_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PushError(f"{note_file} is not valid JSON ({err}): the ladder's note is damaged.") from None
    entries = [*note.get("rungs", []), *([note["scratch"]] if note.get("scratch") else [])]
    by_id = {e["id"]: e.get("artifact") for e in entries}
    if rung not in by_id:
        raise PushError(f"the ladder in {run_dir} has no rung {rung!r}; its rungs: {', '.join(by_id)}.")
    if not by_id[rung]:
        raise PushError(
            f"rung {rung!r} kept no artifact (ladder.keep); use the published one: the run folder without --rung."
        )
    written = Path(by_id[rung])
    # The note holds the path as the run wrote it: absolute, or relative to where it ran; a run folder moved
    # since keeps its `rungs/...` tail.
    tail = written.parts[written.parts.index("rungs") :] if "rungs" in written.parts else None
    candidates = [written, run_dir / written, *([run_dir.joinpath(*tail)] if tail else [])]
    for candidate in candidates:
        if (candidate / ARTIFACT_FILE).is_file():
            return candidate
    raise PushError(f"rung {rung!r}'s artifact {written} is not there any more (looked in {run_dir} too).")


def plan_push(folder: Path, source: Path, repo_id: str, *, revision: str, private: bool, merged: bool) -> PushPlan:
    """The files `folder` would send, the card as it would be uploaded."""
    files = []
    card = None
    for file in shared_files(folder):
        name = file.relative_to(folder).as_posix()
        if name == CARD:
            card = card_for(file.read_text(encoding="utf-8"), repo_id)
            files.append(PushFile(name, len(card.encode("utf-8"))))
        else:
            files.append(PushFile(name, file.stat().st_size))
    return PushPlan(source, repo_id, revision, private, merged, tuple(files), card)


def card_for(card: str, repo_id: str) -> str:
    """The card as pushed: its usage snippets load from `repo_id`."""
    return card.replace(CARD_REPO_LINE, f'REPO = "{repo_id}"')


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _source(path: str | Path, rung: str | None) -> Path:
    try:
        return rung_artifact(Path(path), rung) if rung else artifact_folder(path)
    except FileNotFoundError as err:
        raise PushError(_one_line(str(err), None)) from None


@contextlib.contextmanager
def _staged(source: Path, *, raw: bool, with_rung: bool, base: str | None, token: str | None) -> Iterator[Path]:
    """A temporary folder holding exactly what goes up: the export (with the rung's files in `rung/`), or the
    rung's files alone; every JSON file's paths portable."""
    with tempfile.TemporaryDirectory(prefix="peft_ladder_push_") as tmp:
        try:
            if raw:
                folder = copy_shared(source, Path(tmp) / "rung")
            else:
                folder = export(source, Path(tmp) / "export", merge=True, base=base, token=token)
                if with_rung:
                    copy_shared(source, folder / RUNG_FOLDER)
        except FileNotFoundError as err:
            raise PushError(_one_line(str(err), token)) from None
        yield folder


def _default_message(source: Path, rung: str | None, raw: bool) -> str:
    meta = read_meta(source / ARTIFACT_FILE)
    what = f"rung {rung}" if rung else "the recommended rung"
    return f"peft_ladder: {what} ({meta.get('strategy')}, {meta.get('kind')}{'' if raw else ', exported'})"


def _upload(plan: PushPlan, folder: Path, token: str, message: str) -> tuple[str, str]:
    """One commit that makes `plan.revision` hold exactly the plan's files; returns (repo url, commit id)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)  # a fresh client: it reads HF_ENDPOINT as it is now
    repo_id, revision = plan.repo_id, plan.revision
    try:
        # Only an explicit private: otherwise the namespace's default applies (an organisation may default to it).
        url = api.create_repo(repo_id, exist_ok=True, **({"private": True} if plan.private else {}))
        if revision != DEFAULT_REVISION:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        names = {f.path_in_repo for f in plan.files}
        stale = sorted(set(api.list_repo_files(repo_id, revision=revision)) - names - HUB_OWN_FILES)
        operations: list = [
            CommitOperationAdd(
                f.path_in_repo,
                plan.card.encode("utf-8")
                if f.path_in_repo == CARD and plan.card is not None
                else str(folder / f.path_in_repo),
            )
            for f in plan.files
        ]
        operations += [CommitOperationDelete(p) for p in stale]
        info = api.create_commit(repo_id, operations, commit_message=message, revision=revision)
    except HfHubHTTPError as err:
        raise PushError(_refusal(err, repo_id, token)) from err  # the cause keeps the url and request id
    except OfflineModeIsEnabled:
        raise PushError("HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push.") from None
    except _network_errors() as err:
        raise PushError(
            f"cannot reach the Hub at {api.endpoint} ({type(err).__name__}): check the network and HF_ENDPOINT; "
            "nothing was pushed."
        ) from err
    except ValueError as err:  # huggingface_hub's own checks, e.g. a card whose metadata the Hub rejects
        raise PushError(_one_line(f"the push to {repo_id} was refused: {err}", token)) from None
    return str(url), info.oid


def _refusal(err: HfHubHTTPError, repo_id: str, token: str) -> str:
    """One line for an HTTP error: the status, what it usually means here, the server's own words."""
    status = err.response.status_code
    namespace = repo_id.split("/")[0]
    hints = {
        401: "the token was not accepted: set HF_TOKEN, run `hf auth login` again or pass --token",
        403: f"this token may not write to {namespace!r}: it needs write access there (a fine-grained token "
        "must list the namespace)",
        404: "the repo or revision is not there, or this token cannot see it",
        409: "another push or a conflicting change got there first: try again",
        429: "too many requests: wait a little and try again",
    }
    hint = hints.get(status) or ("the Hub failed: try again later" if status >= 500 else "the Hub rejected the request")
    line = f"the Hub refused the push to {repo_id} (HTTP {status}): {hint}."
    server = getattr(err, "server_message", None)
    if server:
        line += f" The Hub said: {server}"
    return _one_line(line, token)


def _one_line(text: str, token: str | None) -> str:
    """`text` on one line, at most 400 characters, with the token blanked should anything have echoed it."""
    text = " ".join(text.split())
    if token:
        text = text.replace(token, "<token>")
    return text if len(text) <= 400 else text[:399] + "…"


def _network_errors() -> tuple[type[BaseException], ...]:
    """Transport failures (no HTTP answer at all) of whichever client this huggingface_hub uses: httpx2 (2.x),
    httpx (1.x) or requests (0.x)."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        with contextlib.suppress(ImportError, AttributeError):
            errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)
