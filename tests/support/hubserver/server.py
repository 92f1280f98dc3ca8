"""The HTTP face of the fake Hub: the routes ``huggingface_hub`` 2.x calls, and a ``/_test`` control API.

Hub routes (``{t}`` is ``models``, ``datasets`` or ``spaces``; download and LFS URLs put no prefix
before model repos)::

    GET  /api/whoami-v2                              who the token is
    POST /api/repos/create, DELETE /api/repos/delete create (409 when it exists) / delete a repo
    GET  /api/{t}/{ns}/{name}[/revision/{rev}]        repo info with ``sha``
    GET  /api/{t}/{ns}/{name}/refs                    branches
    POST /api/{t}/{ns}/{name}/preupload/{rev}         upload mode per file (LFS above a size)
    POST /[{t}/]{ns}/{name}.git/info/lfs/objects/batch  LFS batch API → upload/verify hrefs here
    PUT  /_lfs/{t}/{ns}/{name}/{oid}                  the upload (sha256 and size checked)
    POST /_lfs/{t}/{ns}/{name}/{oid}/verify           the verify call
    POST /api/{t}/{ns}/{name}/commit/{rev}            NDJSON commit, atomic, ``parentCommit`` → 412
    GET  /api/{t}/{ns}/{name}/tree/{rev}[/{path}]     paginated listing (Link header)
    POST /api/{t}/{ns}/{name}/paths-info/{rev}        info on given paths (form or JSON)
    GET  /api/{t}/{ns}/{name}/commits/{rev}           paginated history
    POST /api/{t}/{ns}/{name}/super-squash/{rev}      history → one commit; unreachable LFS dropped
    GET|HEAD /[{t}/]{ns}/{name}/resolve/{rev}/{path}  file bytes by branch or commit, Range honoured

Control routes (never counted, never faulted)::

    GET  /_test/stats[?repo=<key>]   counters (see HubState.stats)
    POST /_test/faults               add a Fault (JSON body); DELETE /_test/faults clears them
    POST /_test/quota                {"repo": key | "*", "commits_per_hour": n | null}
    POST /_test/config               {"regular_below": n, "page_size": n, "latency_ms": n, ...}
    POST /_test/reset                clear faults, quotas, config and global counters
    POST /_test/drop_pending         {"repo": key}: forget the LFS objects no commit references yet
                                     (as the Hub garbage-collects uploads never committed)
    GET  /_test/health

Errors carry ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) and
``X-Error-Message`` as the real Hub does, so the client raises its typed errors.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from .model import Commit, Entry, HubState, Repo, lfs_pointer, now_iso

_T = r"(?P<t>models|datasets|spaces)"
_R = r"(?P<ns>[A-Za-z0-9._-]+)/(?P<name>[A-Za-z0-9._-]+)"
_TP = r"(?:(?P<t>datasets|spaces)/)?"
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")

ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(rx), kind)
    for m, rx, kind in [
        ("GET", r"^/api/whoami-v2$", "whoami"),
        ("POST", r"^/api/repos/create$", "create"),
        ("DELETE", r"^/api/repos/delete$", "delete"),
        ("GET", rf"^/api/{_T}/{_R}$", "info"),
        ("GET", rf"^/api/{_T}/{_R}/revision/(?P<rev>[^/]+)$", "info"),
        ("GET", rf"^/api/{_T}/{_R}/refs$", "refs"),
        ("POST", rf"^/api/{_T}/{_R}/preupload/(?P<rev>[^/]+)$", "preupload"),
        ("POST", rf"^/api/{_T}/{_R}/commit/(?P<rev>[^/]+)$", "commit"),
        ("GET", rf"^/api/{_T}/{_R}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
        ("POST", rf"^/api/{_T}/{_R}/paths-info/(?P<rev>[^/]+)$", "paths_info"),
        ("GET", rf"^/api/{_T}/{_R}/commits/(?P<rev>[^/]+)$", "commits"),
        ("POST", rf"^/api/{_T}/{_R}/super-squash/(?P<rev>[^/]+)$", "squash"),
        ("POST", rf"^/{_TP}{_R}\.git/info/lfs/objects/batch$", "lfs_batch"),
        ("PUT", rf"^/_lfs/{_T}/{_R}/(?P<oid>[0-9a-f]{{64}})$", "lfs_upload"),
        ("POST", rf"^/_lfs/{_T}/{_R}/(?P<oid>[0-9a-f]{{64}})/verify$", "lfs_verify"),
        ("GET", rf"^/{_TP}{_R}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
        ("HEAD", rf"^/{_TP}{_R}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
    ]
]
_READ_ONLY = {"info", "refs", "tree", "paths_info", "commits", "resolve"}
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _Dropped(Exception):
    """Close the connection without an answer."""


def _repo_type(plural: str | None) -> str:
    return {"models": "model", "datasets": "dataset", "spaces": "space", None: "model"}[plural]


def _url_prefix(repo: Repo) -> str:
    return "" if repo.type == "model" else f"{repo.type}s/"


class HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"
    state: HubState  # set on the subclass made by make_server

    # -- plumbing -----------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle/delayed-ACK stalls

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    @property
    def base(self) -> str:
        return f"http://{self.headers.get('Host', '127.0.0.1')}"

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, err: HubError) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._json(err.status, {"error": err.message}, headers)

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        try:
            body = self._read_body()
            if split.path.startswith("/_test/"):
                self._control(method, split.path, query, body)
                return
            for m, rx, kind in ROUTES:
                match = rx.match(split.path)
                if m == method and match:
                    self._route(kind, match.groupdict(), query, body)
                    return
            raise HubError(404, f"no route for {method} {split.path}")
        except _Dropped:
            self.close_connection = True
        except HubError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _route(self, kind: str, groups: dict[str, str | None], query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        with state.lock:
            repo = None
            if groups.get("ns"):
                key = f"{groups.get('t') or 'models'}/{groups['ns']}/{groups['name']}"
                repo = state.repos.get(key)
            state.count_request(kind, repo)
        try:
            self._answer(kind, repo, groups, query, body)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _answer(
        self, kind: str, repo: Repo | None, groups: dict[str, str | None], query: dict[str, list[str]], body: bytes
    ) -> None:
        state = self.state
        with state.lock:
            fault = state.take_fault(kind, repo.key if repo else None, lose=False)
            latency = state.config.latency_ms / 1000
        if latency:
            time.sleep(latency)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                raise _Dropped()
            if fault.status:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
                raise HubError(fault.status, f"injected HTTP {fault.status}", headers=headers)
        handler: Callable[..., None] = getattr(self, f"_h_{kind}")
        if kind in ("whoami", "create", "delete"):
            handler(body)
            return
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        token = self._token()
        if kind == "lfs_upload":
            pass  # like a pre-signed storage URL: authorised by the signature in its query (checked below)
        elif repo.private and not state.token_ok(token):
            raise HubError(401, "Repository not found", "RepoNotFound")
        elif kind not in _READ_ONLY and not state.token_ok(token):
            raise HubError(401, "Invalid credentials in Authorization header")
        handler(repo, groups, query, body)

    # -- account and repositories ---------------------------------------------------------
    def _require_token(self) -> None:
        if not self.state.token_ok(self._token()):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _h_whoami(self, body: bytes) -> None:
        self._require_token()
        self._json(
            200,
            {
                "type": "user",
                "name": self.state.user,
                "fullname": "Test User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            },
        )

    def _repo_key_from_body(self, body: bytes) -> tuple[str, str, dict[str, Any]]:
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        namespace = payload.get("organization") or self.state.user
        if repo_type not in ("model", "dataset", "space") or not re.fullmatch(r"[A-Za-z0-9._-]+", payload["name"]):
            raise HubError(400, "invalid repo type or name")
        return repo_type, f"{namespace}/{payload['name']}", payload

    def _h_create(self, body: bytes) -> None:
        self._require_token()
        repo_type, repo_id, payload = self._repo_key_from_body(body)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.base}/{prefix}{repo_id}"
        with self.state.lock:
            if f"{repo_type}s/{repo_id}" in self.state.repos:
                self._json(409, {"error": f"You already created this {repo_type} repo", "url": url})
                return
            self.state.create_repo(repo_type, repo_id, private=private)
        self._json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _h_delete(self, body: bytes) -> None:
        self._require_token()
        repo_type, repo_id, _ = self._repo_key_from_body(body)
        with self.state.lock:
            if not self.state.delete_repo(f"{repo_type}s/{repo_id}"):
                raise HubError(404, "Repository not found", "RepoNotFound")
        self._send(200)

    # -- helpers ------------------------------------------------------------------------
    @staticmethod
    def _commit_at(repo: Repo, rev: str | None) -> Commit:
        commit = repo.resolve(unquote(rev or "main"))
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return commit

    def _entry_json(self, repo: Repo, commit: Commit, path: str, *, expand: bool) -> dict[str, Any] | None:
        entry = commit.tree.get(path)
        if entry is not None:
            out: dict[str, Any] = {"type": "file", "oid": entry.oid, "size": entry.size, "path": path}
            if entry.sha256 is not None:
                pointer = lfs_pointer(entry.sha256, entry.size)
                out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(pointer)}
        elif any(p.startswith(path + "/") for p in commit.tree) or path == "":
            out = {"type": "directory", "oid": hashlib.sha1(f"{commit.id}:{path}".encode()).hexdigest(), "size": 0}
            out["path"] = path
        else:
            return None
        if expand:
            last = self._last_commit(repo, commit, path)
            out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return out

    @staticmethod
    def _last_commit(repo: Repo, commit: Commit, path: str) -> Commit:
        def signature(c: Commit) -> tuple[Any, ...]:
            if path in c.tree:
                return (c.tree[path],)
            return tuple(sorted((p, e.oid) for p, e in c.tree.items() if p.startswith(path + "/")))

        history = repo.history(commit.id)
        for newer, older in itertools.pairwise(history):
            if signature(newer) != signature(older):
                return newer
        return history[-1]

    def _page(self, items: list[Any], query: dict[str, list[str]], size: int, path: str) -> None:
        start = int(query.get("cursor", ["0"])[0] or 0)
        page = items[start : start + size]
        headers: dict[str, str] = {}
        if start + size < len(items):
            params = {k: v[0] for k, v in query.items()}
            params["cursor"] = str(start + size)
            headers["Link"] = f'<{self.base}{path}?{urlencode(params)}>; rel="next"'
        self._json(200, page, headers)

    # -- read routes --------------------------------------------------------------------
    def _h_info(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        with self.state.lock:
            commit = self._commit_at(repo, groups.get("rev"))
            info = {
                "id": repo.id,
                "author": repo.id.split("/")[0],
                "sha": commit.id,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "createdAt": repo.created,
                "lastModified": commit.date,
                "tags": [],
                "downloads": 0,
                "likes": 0,
                "siblings": [{"rfilename": p} for p in sorted(commit.tree)],
                "usedStorage": self.state.repo_stats(repo)["stored_bytes"],
            }
        expand = query.get("expand") or query.get("expand[]")
        if expand:  # like the Hub: only the asked properties (plus the id)
            info = {k: v for k, v in info.items() if k == "id" or k in expand}
        self._json(200, info)

    def _h_refs(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        with self.state.lock:
            branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s} for b, s in repo.branches.items()]
        self._json(200, {"branches": branches, "tags": [], "converts": []})

    def _h_tree(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        recursive = query.get("recursive", ["false"])[0].lower() in ("true", "1")
        expand = query.get("expand", ["false"])[0].lower() in ("true", "1")
        base = unquote(groups.get("path") or "").strip("/")
        with self.state.lock:
            commit = self._commit_at(repo, groups["rev"])
            prefix = f"{base}/" if base else ""
            under = [p for p in commit.tree if p.startswith(prefix)]
            if base and not under:
                raise HubError(404, f"Entry not found: {base}", "EntryNotFound")
            paths: set[str] = set()
            for p in under:
                parts = p[len(prefix) :].split("/")
                depth = len(parts) if recursive else 1
                for i in range(1, depth + 1):
                    paths.add(prefix + "/".join(parts[:i]))
            items = [self._entry_json(repo, commit, p, expand=expand) for p in sorted(paths)]
        size = self.state.config.expand_page_size if expand else self.state.config.page_size
        self._page(items, query, size, urlsplit(self.path).path)

    def _h_paths_info(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        if self.headers.get("Content-Type", "").startswith("application/json"):
            payload = json.loads(body or b"{}")
            paths, expand = list(payload.get("paths", [])), bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", ["false"])[0].lower() in ("true", "1")
        with self.state.lock:
            commit = self._commit_at(repo, groups["rev"])
            found = [self._entry_json(repo, commit, p.strip("/"), expand=expand) for p in paths if p.strip("/")]
        self._json(200, [f for f in found if f is not None])

    def _h_commits(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        with self.state.lock:
            commit = self._commit_at(repo, groups["rev"])
            items = [
                {
                    "id": c.id,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": self.state.user, "avatar": ""}],
                }
                for c in repo.history(commit.id)
            ]
        self._page(items, query, self.state.config.commits_page_size, urlsplit(self.path).path)

    def _h_resolve(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        path = unquote(groups["path"])
        with self.state.lock:
            commit = self._commit_at(repo, groups["rev"])
            entry = commit.tree.get(path)
            if entry is None:
                raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.id})
        size = entry.size
        headers = {
            "X-Repo-Commit": commit.id,
            "ETag": f'"{entry.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        if entry.is_lfs:
            headers["X-Linked-Size"] = str(entry.size)
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
        status, start, end = 200, 0, size
        spec = self.headers.get("Range")
        if spec:
            m = _RANGE_RE.match(spec.replace(" ", ""))
            if not m or (not m.group(1) and not m.group(2)):
                raise HubError(400, f"bad Range {spec!r}")
            if m.group(1):
                start = int(m.group(1))
                end = min(size, int(m.group(2)) + 1) if m.group(2) else size
            else:
                start = max(0, size - int(m.group(2)))
            if start >= size or start >= end:
                raise HubError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{size}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        try:  # outside the lock: ranged reads are answered together, each reading only its range
            chunk = self.state.read_entry_range(repo, entry, start, end)
        except (OSError, KeyError):
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.id}) from None
        if self.command == "GET":
            with self.state.lock:
                self.state.bytes_downloaded += len(chunk)
                repo.counters.bytes_downloaded += len(chunk)
        self._send(status, chunk, headers)

    # -- write routes -------------------------------------------------------------------
    def _h_preupload(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        payload = json.loads(body or b"{}")
        with self.state.lock:
            commit = self._commit_at(repo, groups["rev"])
            files = []
            for f in payload.get("files", []):
                existing = commit.tree.get(f["path"])
                mode = "lfs" if f["size"] >= self.state.config.regular_below else "regular"
                oid = None if existing is None else (existing.sha256 or existing.oid)
                files.append({"path": f["path"], "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        self._json(200, {"files": files, "commitOid": commit.id})

    def _h_lfs_batch(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        payload = json.loads(body or b"{}")
        if payload.get("operation") != "upload":
            raise HubError(400, "only the upload operation is supported")
        objects = []
        with self.state.lock:
            for obj in payload.get("objects", []):
                oid, size = obj.get("oid", ""), obj.get("size")
                if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                    objects.append({"oid": str(oid), "size": 0, "error": {"code": 422, "message": "invalid oid/size"}})
                    continue
                if repo.lfs.get(oid) == size:
                    objects.append({"oid": oid, "size": size})
                    continue
                href = f"{self.base}/_lfs/{repo.type}s/{repo.id}/{oid}"
                upload = f"{href}?size={size}&sig={self.state.sign(repo.key, oid, size)}"
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "authenticated": True,
                        "actions": {"upload": {"href": upload}, "verify": {"href": f"{href}/verify", "header": {}}},
                    }
                )
        self._send(
            200,
            json.dumps({"transfer": "basic", "objects": objects}).encode(),
            {"Content-Type": "application/vnd.git-lfs+json"},
        )

    def _h_lfs_upload(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        oid = groups["oid"]
        size = int(query.get("size", ["-1"])[0])
        if query.get("sig", [""])[0] != self.state.sign(repo.key, oid, size):
            raise HubError(403, "bad or missing upload signature")
        if len(body) != size:
            raise HubError(400, f"uploaded {len(body)} bytes, announced {size}")
        if hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "sha256 of the uploaded bytes does not match the object id")
        with self.state.lock:
            self.state.store_lfs(repo, oid, body)
            self.state.bytes_uploaded += len(body)
            repo.counters.bytes_uploaded += len(body)
        self._send(200, b"", {"ETag": f'"{oid}"'})

    def _h_lfs_verify(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        payload = json.loads(body or b"{}")
        with self.state.lock:
            size = repo.lfs.get(groups["oid"])
        if size is None or payload.get("oid") != groups["oid"] or payload.get("size") != size:
            raise HubError(404, "LFS object not found or size mismatch")
        self._json(200, {"success": True})

    def _h_commit(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        if query.get("create_pr"):
            raise HubError(400, "pull requests are not supported by the fake Hub")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "the first NDJSON line must be the header")
        header = lines[0]["value"]
        branch = unquote(groups["rev"])
        with self.state.lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            retry_after = self.state.quota_retry_after(repo)
            if retry_after is not None:
                raise HubError(
                    429,
                    "You have exceeded our hourly quotas for action: commit. We invite you to retry later.",
                    headers={
                        "Retry-After": str(retry_after),
                        "RateLimit": f'"commits";r=0;t={retry_after}',
                        "RateLimit-Policy": '"fixed window";"commits";q=128;w=3600',
                    },
                )
            head = repo.branches[branch]
            parent = header.get("parentCommit")
            if parent is not None and parent != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            tree = dict(repo.commits[head].tree)
            inline_bytes, new_lfs = 0, set()
            for op in lines[1:]:
                key, value = op.get("key"), op.get("value", {})
                path = str(value.get("path", "")).strip("/")
                if not path or ".." in path.split("/"):
                    raise HubError(400, f"invalid path {path!r}")
                if key == "file":
                    data = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"]
                    data = data if isinstance(data, bytes) else str(data).encode()
                    tree[path] = Entry.regular(data)
                    inline_bytes += len(data)
                elif key == "lfsFile":
                    oid = value.get("oid", "")
                    if oid not in repo.lfs:
                        raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
                    tree[path] = Entry.lfs(oid, repo.lfs[oid])
                    new_lfs.add(oid)
                elif key == "deletedFile":
                    if path not in tree:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del tree[path]
                elif key == "deletedFolder":
                    doomed = [p for p in tree if p.startswith(path + "/")]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del tree[p]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            commit = Commit(
                id=self.state.new_commit_id(repo.key, head),
                parent=head,
                tree=tree,
                title=str(header.get("summary") or "commit"),
                message=str(header.get("description") or ""),
                date=now_iso(),
            )
            repo.commits[commit.id] = commit
            repo.branches[branch] = commit.id
            repo.committed_lfs |= new_lfs
            repo.commit_times.append(time.monotonic())
            repo.counters.commits += 1
            repo.counters.bytes_uploaded += inline_bytes
            self.state.bytes_uploaded += inline_bytes
            lose = self.state.take_fault("commit", repo.key, lose=True)
        if lose is not None:
            if lose.lose == "drop":
                raise _Dropped()
            raise HubError(int(lose.lose or 500), "injected failure after the commit was applied")
        url = f"{self.base}/{_url_prefix(repo)}{repo.id}/commit/{commit.id}"
        self._json(200, {"success": True, "commitOid": commit.id, "commitUrl": url, "pullRequestUrl": None})

    def _h_squash(self, repo: Repo, groups: dict[str, Any], query: dict[str, list[str]], body: bytes) -> None:
        payload = json.loads(body or b"{}")
        branch = unquote(groups["rev"])
        with self.state.lock:
            if branch not in repo.branches:
                raise HubError(400 if _SHA_RE.match(branch) else 404, f"not a branch: {branch}", "RevisionNotFound")
            new = self.state.squash(repo, branch, str(payload.get("message") or "Super-squash"))
        self._json(200, {"commitId": new})

    # -- control API --------------------------------------------------------------------
    def _control(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> None:
        state = self.state
        payload: dict[str, Any] = json.loads(body) if body else {}
        with state.lock:
            if (method, path) == ("GET", "/_test/health"):
                self._json(200, {"ok": True})
            elif (method, path) == ("GET", "/_test/stats"):
                if "repo" in query:
                    repo = state.repos.get(query["repo"][0])
                    if repo is None:
                        raise HubError(404, f"no repo {query['repo'][0]}")
                    self._json(200, state.repo_stats(repo))
                else:
                    self._json(200, state.stats())
            elif (method, path) == ("POST", "/_test/faults"):
                try:
                    fault = state.add_fault(payload)
                except (TypeError, ValueError) as e:
                    raise HubError(400, str(e)) from e
                self._json(200, {"id": fault.id})
            elif (method, path) == ("DELETE", "/_test/faults"):
                state.faults.clear()
                self._json(200, {"ok": True})
            elif (method, path) == ("POST", "/_test/quota"):
                limit = payload.get("commits_per_hour")
                if limit is None:
                    state.quotas.pop(payload.get("repo", "*"), None)
                else:
                    state.quotas[payload.get("repo", "*")] = int(limit)
                self._json(200, {"ok": True})
            elif (method, path) == ("POST", "/_test/config"):
                for k, v in payload.items():
                    if not hasattr(state.config, k):
                        raise HubError(400, f"unknown config {k}")
                    setattr(state.config, k, int(v))
                self._json(200, {"ok": True})
            elif (method, path) == ("POST", "/_test/drop_pending"):
                repo = state.repos.get(payload.get("repo", ""))
                if repo is None:
                    raise HubError(404, f"no repo {payload.get('repo')}")
                self._json(200, {"dropped": state.drop_pending(repo)})
            elif (method, path) == ("POST", "/_test/reset"):
                state.reset_knobs()
                self._json(200, {"ok": True})
            else:
                raise HubError(404, f"no control route {method} {path}")


class _Server(ThreadingHTTPServer):
    # The Hub takes many connections at once (a restore opens ~30 together); with the standard
    # library's backlog of 5 the kernel drops the rest, and each of those waits a 1 s SYN retransmit.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (reset, broken pipe) is no server error: the real Hub logs
        nothing about it either. Anything else is printed, as the standard library does."""
        import sys

        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


def make_server(state: HubState, port: int = 0) -> ThreadingHTTPServer:
    """A threading server on 127.0.0.1 (never another interface) serving ``state``."""
    handler = type("BoundHubHandler", (HubHandler,), {"state": state})
    server = _Server(("127.0.0.1", port), handler)
    server.daemon_threads = True
    return server
