"""An in-memory stand-in for the Hugging Face Hub's HTTP API, on 127.0.0.1 in a thread.

It stands in for huggingface.co because this machine cannot reach the Hub. It serves what huggingface_hub 2.4
calls for a push and a download, and nothing else:

- `POST /api/repos/create`: `create_repo` (409 when the repo exists, which `exist_ok=True` accepts).
- `POST /api/models/{repo}/branch/{branch}`: `create_branch` (409 when it exists).
- `POST /api/validate-yaml`: `create_commit` checks a README's metadata there first.
- `POST /api/models/{repo}/preupload/{rev}`: every file is answered `"regular"`, so the commit carries the
  content inline (base64) and no LFS or Xet storage is involved (hf_xet is installed, but huggingface_hub only
  uploads through Xet the files the Hub calls "lfs").
- `POST /api/models/{repo}/commit/{rev}`: the ndjson commit (`header`, `file` with base64 content, `deletedFile`,
  `deletedFolder`).
- `GET /api/models/{repo}[/revision/{rev}]`: `model_info` / `repo_info` with `sha` and `siblings`.
- `GET /api/models/{repo}/tree/{rev}[/{path}]`: `list_repo_tree` (what `snapshot_download` lists), and
  `GET /api/models/{repo}/refs`.
- `HEAD` / `GET /{repo}/resolve/{rev}/{path}`: `hf_hub_download`, with `ETag` (the git blob sha1),
  `X-Repo-Commit` and `Content-Length`, and no `X-Xet-Hash`, so downloads are plain HTTP GETs.
- `GET /api/agent-harnesses`: huggingface_hub's user-agent helper fetches it once (an empty registry).

Every other route needs `Authorization: Bearer <FakeHub.TOKEN>` and gets 401 without it. Writes into a namespace
listed in `refuse` are answered with its status (403 for `forbidden/...`), as the Hub refuses a token without
write access there. Files are kept per repo and per commit; each branch points at a commit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit


def git_blob_sha(data: bytes) -> str:
    """The id git (and the Hub's ETag for a regular file) gives a blob."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit id
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit id -> {path: content}
    messages: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Seen:
    """One request the fake Hub answered."""

    method: str
    path: str
    authorized: bool


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.commit, self.extra = status, message, code, commit, extra


class FakeHub:
    """The fake Hub: `start()`, point `HF_ENDPOINT` at `url`, read `repos` / `files()` / `requests`."""

    TOKEN = "hf_fakehubTestToken0123456789abcdef"

    def __init__(self, refuse: dict[str, int] | None = None):
        self.repos: dict[str, Repo] = {}
        self.requests: list[Seen] = []
        self.refuse = {"forbidden": 403, "broken": 500} if refuse is None else refuse
        self._lock = threading.Lock()
        self._counter = 0
        self._server: ThreadingHTTPServer | None = None

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ---- what tests read ------------------------------------------------------------------------
    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.branches.get(revision, revision)])

    # ---- the state the routes change ------------------------------------------------------------
    def _new_commit(self, repo: Repo, files: dict[str, bytes], message: str) -> str:
        self._counter += 1
        digest = hashlib.sha1(f"{self._counter}:{message}".encode())
        for path in sorted(files):
            digest.update(path.encode() + git_blob_sha(files[path]).encode())
        oid = digest.hexdigest()
        repo.commits[oid], repo.messages[oid] = files, message
        return oid

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, f"Repository {repo_id} not found", code="RepoNotFound")
        return self.repos[repo_id]

    def _commit_of(self, repo: Repo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _check_write(self, repo_id: str) -> None:
        status = self.refuse.get(repo_id.split("/")[0])
        if status is not None:
            raise HubError(status, f"You don't have the rights to write to {repo_id}")

    # ---- routes ---------------------------------------------------------------------------------
    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else f"user/{body['name']}"
        self._check_write(repo_id)
        if repo_id in self.repos:
            # The Hub's 409 names the repo's url, which `create_repo(exist_ok=True)` returns.
            raise HubError(409, "You already created this model repo", url=f"{self.url}/{repo_id}")
        repo = Repo(private=body.get("visibility") == "private" or body.get("private") is True)  # new / old clients
        # A new Hub repo starts with one commit holding `.gitattributes`, so branches can start from main.
        repo.branches["main"] = self._new_commit(repo, {".gitattributes": b"*.safetensors filter=lfs\n"}, "initial")
        self.repos[repo_id] = repo
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def create_branch(self, repo_id: str, branch: str, body: dict) -> tuple[int, dict]:
        self._check_write(repo_id)
        repo = self._repo(repo_id)
        if branch in repo.branches:
            raise HubError(409, f"Reference refs/heads/{branch} already exists")
        repo.branches[branch] = self._commit_of(repo, body.get("startingPoint") or "main")
        return 200, {}

    def preupload(self, repo_id: str, revision: str, body: dict) -> tuple[int, dict]:
        self._check_write(repo_id)
        self._commit_of(self._repo(repo_id), revision)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]]
        return 200, {"files": files}

    def commit(self, repo_id: str, revision: str, lines: list[dict]) -> tuple[int, dict]:
        self._check_write(repo_id)
        repo = self._repo(repo_id)
        if revision not in repo.branches:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        files = dict(repo.commits[repo.branches[revision]])
        header = {}
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding") != "base64":
                    raise HubError(400, "only base64 content is supported here")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, "A file with this name doesn't exist", code="EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            else:  # lfsFile: the preupload answer never asks for it
                raise HubError(400, f"this fake Hub stores no LFS objects (got {key})")
        oid = self._new_commit(repo, files, header.get("summary", ""))
        repo.branches[revision] = oid
        return 200, {"commitUrl": f"{self.url}/{repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    def info(self, repo_id: str, revision: str) -> tuple[int, dict]:
        repo = self._repo(repo_id)
        oid = self._commit_of(repo, revision)
        siblings = [{"rfilename": p} for p in sorted(repo.commits[oid])]
        return 200, {"id": repo_id, "modelId": repo_id, "sha": oid, "private": repo.private, "siblings": siblings}

    def tree(self, repo_id: str, revision: str, path: str, recursive: bool) -> tuple[int, list]:
        repo = self._repo(repo_id)
        files = repo.commits[self._commit_of(repo, revision)]
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in files):
            raise HubError(404, f"{path} does not exist", code="EntryNotFound")
        entries: dict[str, dict] = {}
        for name, content in sorted(files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder, {"type": "directory", "oid": git_blob_sha(folder.encode()), "path": folder}
                    )
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": name}
        return 200, list(entries.values())

    def refs(self, repo_id: str) -> tuple[int, dict]:
        repo = self._repo(repo_id)
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in repo.branches.items()]
        return 200, {"branches": branches, "tags": [], "converts": []}

    def resolve(self, repo_id: str, revision: str, path: str) -> tuple[str, bytes]:
        repo = self._repo(repo_id)
        oid = self._commit_of(repo, revision)
        if path not in repo.commits[oid]:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", commit=oid)
        return oid, repo.commits[oid][path]


_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/branch/(?P<branch>[^/]+)$"), "create_branch"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"), "preupload"),
    ("POST", re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"), "commit"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/refs$"), "refs"),
    ("GET", re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?P<path>/.*)?$"), "tree"),
    ("GET", re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "info"),
    ("GETHEAD", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every answer has a Content-Length
    fake: FakeHub

    def log_message(self, format, *args):  # noqa: A002 - quiet: pytest shows failures, not access logs
        pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while (size := int(self.rfile.readline().strip() or b"0", 16)) > 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return data
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict[str, str] | None = None, head: bool = False):
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}, head)

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        body = self._body() if method == "POST" else b""
        authorized = self.headers.get("Authorization") == f"Bearer {FakeHub.TOKEN}"
        hub = self.fake
        with hub._lock:
            hub.requests.append(Seen(method, path, authorized))
            if path == "/api/agent-harnesses":
                return self._json(200, {"standardEnvVars": [], "harnesses": {}})
            if not authorized:
                headers = {"X-Error-Message": "Invalid credentials in Authorization header"}
                return self._json(
                    401, {"error": "Invalid credentials in Authorization header"}, headers, method == "HEAD"
                )
            try:
                if path == "/api/validate-yaml":
                    return self._json(200, {"errors": [], "warnings": []})
                for verb, pattern, name in _ROUTES:
                    match = pattern.match(path)
                    if match and method in verb:
                        return self._route(name, method, match, query, body)
                return self._json(404, {"error": f"no route {method} {path} in the fake Hub"})
            except HubError as err:
                headers = {"X-Error-Message": err.message}
                if err.code:
                    headers["X-Error-Code"] = err.code
                if err.commit:
                    headers["X-Repo-Commit"] = err.commit
                return self._json(err.status, {"error": err.message, **err.extra}, headers, method == "HEAD")

    def _route(self, name: str, method: str, match: re.Match, query: dict, body: bytes) -> None:
        hub = self.fake
        repo = unquote(match["repo"]) if "repo" in match.groupdict() else ""
        rev = unquote(match["rev"]) if match.groupdict().get("rev") else "main"
        if name == "create_repo":
            return self._json(*hub.create_repo(json.loads(body)))
        if name == "create_branch":
            return self._json(*hub.create_branch(repo, unquote(match["branch"]), json.loads(body or b"{}")))
        if name == "preupload":
            return self._json(*hub.preupload(repo, rev, json.loads(body)))
        if name == "commit":
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            return self._json(*hub.commit(repo, rev, lines))
        if name == "refs":
            return self._json(*hub.refs(repo))
        if name == "tree":
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._json(*hub.tree(repo, rev, unquote(match["path"] or ""), recursive))
        if name == "info":
            return self._json(*hub.info(repo, rev))
        oid, content = hub.resolve(repo, rev, unquote(match["path"]))
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{git_blob_sha(content)}"',
            "X-Repo-Commit": oid,
        }
        return self._send(200, content, headers, head=method == "HEAD")
