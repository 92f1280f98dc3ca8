"""A fake Hub for the test run (``tests.support.hubserver``) driven through the real ``huggingface_hub`` client.

``hub_server`` (session) starts ``python -m tests.support.hubserver`` as a subprocess on 127.0.0.1 with a
port file and a data directory, and stops it by PID: TERM, then KILL after a few seconds. Its
:class:`HubServer` handle reads and resets the server's counters and injects faults and quotas.
``hub_repo`` names a fresh repository per test (not yet created) and ``hub_backend`` yields an
:class:`~openclaw_backup.backends.hf_repo.HfRepoBackend` on it, created private. Uploads use plain LFS
(``HF_HUB_DISABLE_XET``), as the fake server speaks no Xet.

Buckets need Xet, so there is no bucket on the fake server: ``hub_bucket_backend`` yields an
:class:`~openclaw_backup.backends.hf_bucket.HfBucketBackend` on a :class:`FakeBucketApi`, an
in-memory stand-in for the bucket methods of ``HfApi`` (the live run in ``tests/test_hf_backend.py``
covers the real API when ``OPENCLAW_TEST_HF_BUCKET`` is set).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from huggingface_hub import errors as hf_errors
from huggingface_hub._buckets import BucketFile, BucketInfo

from openclaw_backup.backends import BackendOptions, open_hf
from openclaw_backup.backends.hf_bucket import HfBucketBackend
from openclaw_backup.backends.hf_repo import HfRepoBackend
from openclaw_backup.backends.options import HubEnvironment
from tests.support.processes import log_tail, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_fake_hub_test_token"
USER = "tester"
START_TIMEOUT = 20.0

# The control API is on loopback: never let a proxy from the environment see it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class HubServer:
    """Handle on the running fake Hub: its URL, PID and control API."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def _control(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with _OPENER.open(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def stats(self, repo: str | None = None) -> dict[str, Any]:
        """Global counters, or one repo's (``repo`` is a key such as ``datasets/tester/x``)."""
        query = f"?repo={repo}" if repo else ""
        result: dict[str, Any] = self._control("GET", f"/_test/stats{query}")
        return result

    def add_fault(self, kind: str, **spec: Any) -> None:
        """Inject a fault (see ``tests.support.hubserver.model.Fault``): ``count``, ``status``, ``lose``, …"""
        self._control("POST", "/_test/faults", {"kind": kind, **spec})

    def clear_faults(self) -> None:
        self._control("DELETE", "/_test/faults")

    def set_quota(self, repo: str, commits_per_hour: int | None) -> None:
        self._control("POST", "/_test/quota", {"repo": repo, "commits_per_hour": commits_per_hour})

    def drop_pending(self, repo: str) -> int:
        """Forget ``repo``'s uploads that no commit references (the Hub's garbage collection)."""
        result: dict[str, int] = self._control("POST", "/_test/drop_pending", {"repo": repo})
        return result["dropped"]

    def configure(self, **config: int) -> None:
        self._control("POST", "/_test/config", config)

    def reset(self) -> None:
        """Clear faults, quotas, config and the global counters (repos stay)."""
        self._control("POST", "/_test/reset")

    def options(self, **overrides: Any) -> BackendOptions:
        """Options as the settings make them (the lean read path, :class:`HubEnvironment`: no proxy,
        not offline); ``hub_env=None`` for the libraries' own reading of the environment."""
        base: dict[str, Any] = {"token": TOKEN, "hf_endpoint": self.url, "timeout": 10.0, "retries": 1,
                                "hub_env": HubEnvironment()}  # fmt: skip
        base.update(overrides)
        return BackendOptions(**base)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture(scope="session")
def hub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    root = tmp_path_factory.mktemp("fakehub")
    port_file, log = root / "port", root / "server.log"
    args = [sys.executable, "-m", "tests.support.hubserver", "--port-file", str(port_file)]
    args += ["--data-dir", str(root / "data"), "--user", USER, "--token", TOKEN]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env=env
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not port_file.exists():
            if proc.poll() is not None:
                pytest.fail(f"the fake Hub exited with status {proc.returncode}:\n{log_tail(log)}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"the fake Hub did not start within {START_TIMEOUT:.0f} s:\n{log_tail(log)}", pytrace=False)
            time.sleep(0.05)
        server = HubServer(f"http://127.0.0.1:{int(port_file.read_text())}", proc, log)
        server._control("GET", "/_test/health")
        yield server
    finally:
        stop_process(proc)


@dataclass
class HubRepo:
    """A fresh repository name on the fake Hub (not created until a backend opens it with create)."""

    server: HubServer
    repo_id: str
    repo_type: str = "dataset"
    prefix: str | None = None
    opened: list[Any] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The server's name for the repo in stats/faults/quotas."""
        return f"{self.repo_type}s/{self.repo_id}"

    @property
    def address(self) -> str:
        return f"hf://{self.repo_type}s/{self.repo_id}" + (f"/{self.prefix}" if self.prefix else "")

    def open(self, **options: Any) -> HfRepoBackend:
        backend = open_hf(self.address, self.server.options(**options))
        assert isinstance(backend, HfRepoBackend)
        self.opened.append(backend)
        return backend

    def stats(self) -> dict[str, Any]:
        return self.server.stats(self.key)

    def add_fault(self, kind: str, **spec: Any) -> None:
        self.server.add_fault(kind, repo=self.key, **spec)

    def api(self) -> Any:
        """A plain HfApi on the fake Hub (for setting up legacy files, peeking at history)."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.server.url, token=TOKEN)


@pytest.fixture
def hub_repo(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubRepo]:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # read at import time
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    repo = HubRepo(hub_server, f"{USER}/t-{uuid.uuid4().hex[:12]}")
    yield repo
    hub_server.clear_faults()
    for backend in repo.opened:
        backend.close()


@pytest.fixture
def hub_backend(hub_repo: HubRepo) -> HfRepoBackend:
    """A backend on a fresh private dataset repo of the fake Hub (created on open)."""
    return hub_repo.open(create=True)


# ---------------------------------------------------------------------------------------------
# Buckets: the fake Hub speaks no Xet, so the bucket backend runs against an in-memory bucket API


class FakeBucketApi:
    """In-memory stand-in for HfApi's bucket methods (the ones HfBucketBackend calls)."""

    endpoint = "http://fake-bucket.invalid"

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, bytes]] = {}
        self.private: dict[str, bool] = {}
        self.lock = threading.RLock()
        self.on_upload: Callable[[str], None] | None = None

    def _files(self, bucket_id: str) -> dict[str, bytes]:
        if bucket_id not in self.buckets:
            url = f"{self.endpoint}/api/buckets/{bucket_id}"
            response = httpx2.Response(404, request=httpx2.Request("GET", url))
            raise hf_errors.BucketNotFoundError("404 Bucket Not Found", response=response)
        return self.buckets[bucket_id]

    def bucket_info(self, bucket_id: str) -> BucketInfo:
        files = self._files(bucket_id)
        return BucketInfo(
            id=bucket_id,
            private=self.private[bucket_id],
            createdAt=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            size=sum(map(len, files.values())),
            totalFiles=len(files),
        )

    def create_bucket(self, bucket_id: str, *, private: bool | None = None, exist_ok: bool = False) -> None:
        with self.lock:
            if bucket_id in self.buckets and not exist_ok:
                raise AssertionError("exists")
            self.buckets.setdefault(bucket_id, {})
            self.private[bucket_id] = bool(private)

    def batch_bucket_files(
        self, bucket_id: str, *, add: list[tuple[bytes, str]] | None = None, delete: list[str] | None = None
    ) -> None:
        with self.lock:
            files = self._files(bucket_id)
            for data, path in add or []:
                files[path] = bytes(data)
            for path in delete or []:
                files.pop(path, None)
        for _, path in add or []:
            if self.on_upload is not None:
                self.on_upload(path)

    def _file(self, path: str, data: bytes) -> BucketFile:
        return BucketFile(type="file", path=path, size=len(data), xetHash=hashlib.sha256(data).hexdigest())

    def get_bucket_paths_info(self, bucket_id: str, paths: list[str]) -> Iterator[BucketFile]:
        with self.lock:
            files = dict(self._files(bucket_id))
        return iter([self._file(p, files[p]) for p in paths if p in files])

    def list_bucket_tree(self, bucket_id: str, prefix: str | None = None, *, recursive: bool | None = None) -> Any:
        with self.lock:
            files = dict(self._files(bucket_id))
        base = (prefix or "").rstrip("/") + "/" if prefix else ""
        return iter([self._file(p, d) for p, d in sorted(files.items()) if p.startswith(base)])

    def reader(self, bucket_id: str) -> Callable[[str, int, int | None], bytes | None]:
        def read(path: str, offset: int, length: int | None) -> bytes | None:
            with self.lock:
                data = self._files(bucket_id).get(path)
            if data is None:
                return None
            return data[offset : None if length is None else offset + length]

        return read


@pytest.fixture
def hub_bucket_backend() -> Iterator[HfBucketBackend]:
    """A bucket backend on a fresh bucket of a :class:`FakeBucketApi` (created on open)."""
    fake = FakeBucketApi()
    backend = HfBucketBackend(fake, "tester/bucket", prefix="p", read_range=fake.reader("tester/bucket"))
    backend.ensure_bucket(create=True, private=True)
    yield backend
    backend.close()
