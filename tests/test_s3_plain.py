"""S3 reads without botocore (:mod:`openclaw_backup.backends.s3_plain`) against the real SeaweedFS:
signed GETs of objects, ranges, the head and listings agree with botocore's, under a prefix with
characters that need encoding; a proxy in the environment keeps botocore; missing credentials keep
botocore; a restore from S3 with explicit credentials imports no botocore at all; over https, one
TLS context for a store, its reopened copies and a forked child, and one handshake per connection."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from openclaw_backup.backends import open_backend
from openclaw_backup.backends.s3 import S3Backend, open_s3
from openclaw_backup.errors import NotFoundError, StoreError
from openclaw_backup.settings import Settings
from tests.support.cli import CLI_TIMEOUT, cli_env
from tests.support.s3 import S3Server
from tests.support.tls import TlsFront, self_signed
from tests.support.trees import fingerprint

pytestmark = pytest.mark.timeout(120)


def _both(backend: S3Backend) -> tuple[S3Backend, S3Backend]:
    """The backend reading through plain S3 reads, and a copy reading through botocore."""
    assert backend._plain is not None
    through_botocore = backend.reopen()
    through_botocore._plain = None
    return backend, through_botocore


@pytest.mark.parametrize("prefix", ["repo", "a b+c/ü~(x)/repo"])
def test_plain_reads_are_botocore_s(s3_server: S3Server, s3_shared_bucket: str, prefix: str) -> None:
    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/{prefix}"
    backend = open_s3(address, s3_server.options())
    data = bytes(range(256)) * 300
    names = ["config", "keys/k1", "data/0a/" + "ab" * 32, "index/i-1"]
    for name in names:
        backend.put(name, data + name.encode())
    version = backend.publish(head=b"the head", expect=None)
    plain, boto = _both(open_s3(address, s3_server.options()))
    for reader in (plain, boto):
        assert reader.list() == sorted(names) and reader.list("data/") == [names[2]]
        assert reader.list("nothing/") == []
        head = reader.read_head()
        assert head is not None and head.data == b"the head" and head.version == version
        for name in names:
            whole = data + name.encode()
            assert reader.get(name) == whole
            assert reader.get(name, offset=1000, length=5000) == whole[1000:6000]
            assert reader.get(name, offset=len(whole) - 3, length=10) == whole[-3:]  # short at the end
            assert reader.get(name, offset=len(whole), length=10) == b""
        with pytest.raises(NotFoundError):
            reader.get("data/0a/missing", offset=0, length=10)
    assert plain._made is None  # the plain reads made no botocore client


def test_a_proxy_in_the_environment_or_no_explicit_credentials_keep_botocore(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path
) -> None:
    """The settings read the proxy variables (the store reads no environment): a proxy that applies
    to the endpoint keeps botocore, which goes through it; ``NO_PROXY`` naming the host, or a proxy
    of the other scheme, leaves the plain reads on."""
    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/repo"
    base = {
        "HOME": str(tmp_path),
        "OPENCLAW_BACKUP_S3_ENDPOINT": s3_server.endpoint,
        "OPENCLAW_BACKUP_S3_ACCESS_KEY_ID": s3_server.access_key,
        "OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": "us-east-1",
    }

    def opened(**env: str) -> S3Backend:
        return open_s3(address, Settings(env={**base, **env}).backend_options())

    proxy = "http://127.0.0.1:9"
    assert opened()._plain is not None
    for proxied in ({"HTTP_PROXY": proxy}, {"http_proxy": proxy}, {"ALL_PROXY": proxy}):
        options = Settings(env={**base, **proxied}).backend_options()
        assert options.s3_proxy == proxy
        assert open_s3(address, options)._plain is None, proxied
    assert opened(HTTPS_PROXY=proxy)._plain is not None  # the endpoint is http://
    assert opened(http_proxy=proxy, NO_PROXY="127.0.0.1")._plain is not None
    assert opened(HTTP_PROXY=proxy, no_proxy="*")._plain is not None
    assert opened(HTTP_PROXY=proxy, http_proxy="")._plain is not None  # the lower-case name wins
    # The legacy env files' variables are not the process's: botocore would not see such a proxy.
    settings = Settings(env={**base, "HTTP_PROXY": proxy}, process_env=base)
    assert settings.backend_options().s3_proxy is None
    for missing in ({"s3_region": None}, {"s3_access_key": None}, {"s3_endpoint": None}):
        assert open_s3(address, s3_server.options(**missing))._plain is None


def test_botocore_goes_through_the_proxy_the_settings_name(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a proxy configured, a read reaches the store through that proxy (botocore reads the
    same variables of the process): the proxy saw the request."""
    from tests.support.latency_proxy import LatencyProxy

    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/repo"
    open_s3(address, s3_server.options()).put("config", b"the config")
    host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
    front = LatencyProxy(host, int(port), 0.0)
    proxy = f"http://127.0.0.1:{front.start()}"
    try:
        env = {"HOME": str(tmp_path), "HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        options = Settings(env={**env, "OPENCLAW_BACKUP_S3_ENDPOINT": s3_server.endpoint}).backend_options()
        assert options.s3_proxy == proxy
        backend = open_s3(address, s3_server.options(s3_proxy=options.s3_proxy))
        assert backend.get("config") == b"the config"
        assert backend._plain is None and backend._made is not None
        assert front.requests >= 1, front.stats()
    finally:
        front.stop()


PROBE = """
import json, os, sys
out, sys.argv = sys.argv[1], ["openclaw-backup", *sys.argv[2:]]
pid = os.getpid()
from openclaw_backup.cli import main
code = main()
if os.getpid() == pid:
    with open(out, "w") as f:
        json.dump(sorted(sys.modules), f)
sys.exit(code)
"""


def test_a_restore_from_s3_imports_no_botocore(s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i in range(20):
        p = src / f"d{i % 3}" / f"f{i}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(bytes([i]) * (5000 * i + 1))
    env = cli_env(
        tmp_path,
        OPENCLAW_BACKUP_S3_ENDPOINT=s3_server.endpoint,
        OPENCLAW_BACKUP_S3_ACCESS_KEY_ID=s3_server.access_key,
        OPENCLAW_BACKUP_S3_SECRET_ACCESS_KEY=s3_server.secret_key,
        AWS_REGION="us-east-1",
    )
    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/repo"

    def run(*args: str, out: Path | None = None) -> None:
        cmd = [sys.executable, "-c", PROBE, str(out or tmp_path / "ignored.json"), "--repo", address, *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
        assert proc.returncode == 0, proc.stderr

    run("init")
    run("backup", "--source", str(src), "--no-default-excludes")
    run("restore", "latest", "--target", str(tmp_path / "out"), "--yes", out=tmp_path / "modules.json")
    assert fingerprint(tmp_path / "out" / "src") == fingerprint(src)
    modules = json.loads((tmp_path / "modules.json").read_text())
    assert [m for m in modules if m.startswith("botocore") or m.startswith("boto3")] == []


def test_an_endpoint_only_botocore_trusts_is_read_through_botocore(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A private CA given to botocore (``AWS_CA_BUNDLE``): the plain read does not verify the
    certificate, so that read and the later ones go through botocore, and succeed."""
    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/repo"
    writer = open_s3(address, s3_server.options())
    writer.put("config", b"the config")
    cert, key = self_signed(tmp_path)
    host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
    front = TlsFront((host, int(port)), cert, key)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(cert))
    try:
        backend = open_s3(address, s3_server.options(s3_endpoint=f"https://127.0.0.1:{front.port}"))
        assert backend._plain is not None
        assert backend.get("config") == b"the config"
        assert backend._plain is None  # turned off: botocore read it
        assert backend.list() == ["config"] and backend.read_head() is None
    finally:
        front.close()


def test_an_endpoint_nobody_here_trusts_fails_at_once_with_a_hint(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate that verifies neither for the plain reads nor for botocore: one attempt each,
    then a permanent store error whose hint names ``AWS_CA_BUNDLE`` — not a network failure retried
    with backoff (before: every retry allowed, each with a refused handshake)."""
    import time

    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/repo"
    open_s3(address, s3_server.options()).put("config", b"the config")
    cert, key = self_signed(tmp_path)
    host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
    front = TlsFront((host, int(port)), cert, key)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    try:
        backend = open_backend(address, s3_server.options(s3_endpoint=f"https://127.0.0.1:{front.port}", retries=5))
        with pytest.raises(StoreError) as caught:
            backend.get("config")
        assert not caught.value.transient and "AWS_CA_BUNDLE" in (caught.value.hint or ""), caught.value
        deadline = time.monotonic() + 5  # every attempt was made before the error; the front counts a moment later
        while front.refused < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert front.refused == 2, front.refused  # the plain read's, then botocore's
        assert front.handshakes == 0
    finally:
        front.close()


def test_https_reads_load_the_ca_certificates_once_and_keep_their_connections(
    s3_server: S3Server, s3_shared_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three first reads together make one TLS context (not one each); twenty more reuse their
    connections (no handshake); a reopened store and a forked child's reopened store make none."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from openclaw_backup.backends import s3_plain

    address = f"s3://{s3_shared_bucket}/{uuid.uuid4().hex[:8]}/repo"
    open_s3(address, s3_server.options()).put("config", b"the config")
    cert, key = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # OpenSSL's default verify paths: this one trusts it
    made: list[int] = []
    default_tls = s3_plain._default_tls
    monkeypatch.setattr(s3_plain, "_default_tls", lambda: (made.append(os.getpid()), default_tls())[1])
    host, port = s3_server.endpoint.rsplit("/", 1)[-1].split(":")
    front = TlsFront((host, int(port)), cert, key)
    try:
        backend = open_s3(address, s3_server.options(s3_endpoint=f"https://127.0.0.1:{front.port}"))
        reads = [backend.read_head, lambda: backend.list("keys/"), lambda: backend.get("config")]
        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(lambda read: read(), reads)) == [None, [], b"the config"]
        assert backend._plain is not None and made == [os.getpid()]
        assert 1 <= front.handshakes <= 3
        connections = front.handshakes
        for _ in range(20):
            assert backend.get("config", offset=4, length=6) == b"config"
        assert front.handshakes == connections  # kept alive
        assert backend.reopen().get("config") == b"the config" and front.handshakes == connections + 1
        assert made == [os.getpid()]
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # the forked worker of a restore: its own connections, the same context
            code = 1
            try:
                ok = backend.reopen().get("config") == b"the config" and made == [os.getppid()]
                code = 0 if ok else 2
            finally:
                os.write(write_end, bytes([code]))
                os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 1) == bytes([0])
        os.waitpid(child, 0)
        assert made == [os.getpid()] and front.handshakes == connections + 2
    finally:
        front.close()
