"""What a cold start from a Hub repo spends before its first request: the modules it imports and the
TLS contexts it makes (issue 14's cold start).

A restore only reads and lists, so it imports none of the library's write side (the commit API, the
HfApi module, the download cache) nor boto3 — nor, since its reads are plain GETs whose settings the
settings read (:mod:`openclaw_backup.settings.hub`), ``huggingface_hub`` or ``httpx2`` at all
(tests/test_hub_lean.py); over plain http it makes no TLS context. The TLS context of an https
endpoint is the one httpx2 would make (same CA bundle, certificates verified), made once, early,
off the main thread; ``HF_HUB_OFFLINE`` still stops every request. Through the real CLI in a fresh
interpreter against the fake Hub.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from openclaw_backup import forkwork
from openclaw_backup.backends import hub_client, hub_files, hub_tls
from openclaw_backup.backends.options import HubEnvironment
from tests.support.cli import CLI_TIMEOUT, cli_env, hub_env
from tests.support.hub import TOKEN, HubRepo
from tests.support.processes import in_forked_child
from tests.support.repos import new_repo, run_backup
from tests.support.trees import fingerprint, set_mtimes

pytestmark = pytest.mark.timeout(120)

#: Modules a restore from a Hub repo never uses: the Hub's client library and its HTTP stack (its
#: reads are plain GETs), the chunker (a restore cuts nothing) and the S3 client.
UNUSED_BY_A_RESTORE = (
    "huggingface_hub",
    "httpx2",
    "httpcore2",
    "huggingface_hub.hf_api",
    "huggingface_hub._commit_api",
    "huggingface_hub.file_download",
    "huggingface_hub.lfs",
    "tqdm",
    "pyfastcdc",
    "boto3",
    "botocore",
)

#: Runs the CLI in this interpreter, counting the CA bundles loaded, and writes what it imported and
#: how many bundles it loaded to argv[1] (the worker a restore forks exits without writing).
PROBE = """
import json, os, ssl, sys
loads = []
real = ssl.SSLContext.load_verify_locations
def counted(self, *a, **kw):
    loads.append(1)
    return real(self, *a, **kw)
ssl.SSLContext.load_verify_locations = counted
out, sys.argv = sys.argv[1], ["openclaw-backup", *sys.argv[2:]]
pid = os.getpid()
from openclaw_backup.cli import main
code = main()
if os.getpid() == pid:
    with open(out, "w") as f:
        json.dump({"modules": sorted(sys.modules), "ca_loads": len(loads)}, f)
sys.exit(code)
"""


def _source(root: Path) -> None:
    for i in range(12):
        p = root / f"d{i % 3}" / f"f{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"file {i}\n".encode() * (200 * i + 1))
    set_mtimes(root, 1_700_000_000 * 10**9)


def _probe(args: list[str], env: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_a_restore_from_a_hub_repo_imports_no_hub_library_and_loads_no_ca_bundle_over_http(
    hub_repo: HubRepo, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _source(src)
    run_backup(new_repo(hub_repo.open(create=True)), {"src": src}, forked=False)
    env = cli_env(tmp_path, **hub_env(hub_repo.server.url, TOKEN))
    out, dest = tmp_path / "probe.json", tmp_path / "restored"
    proc = _probe(["--repo", hub_repo.address, "restore", "latest", "--target", str(dest)], env, out)
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(dest / "src") == fingerprint(src)
    seen = json.loads(out.read_text())
    imported = [m for m in UNUSED_BY_A_RESTORE if m in seen["modules"]]
    assert imported == [], f"a restore imported {imported}"
    assert seen["ca_loads"] == 0  # an http:// endpoint: no TLS context at all


def test_the_hub_session_still_runs_the_library_request_hook(hub_repo: HubRepo, tmp_path: Path) -> None:
    """``HF_HUB_OFFLINE=1`` (the library's hook refuses every request; the settings send the reads
    through it) stops a restore before any request reaches the Hub, with a storage error that says why."""
    run_backup(new_repo(hub_repo.open(create=True)), {"src": _made(tmp_path / "src")}, forked=False)
    before = hub_repo.stats()["requests"]
    env = cli_env(tmp_path, **hub_env(hub_repo.server.url, TOKEN), HF_HUB_OFFLINE="1")
    proc = _probe(["--repo", hub_repo.address, "restore", "latest", "--target", str(tmp_path / "d")], env,
                  tmp_path / "probe.json")  # fmt: skip
    assert proc.returncode == 15, proc.stderr
    assert "offline mode" in proc.stderr
    assert hub_repo.stats()["requests"] == before
    assert not (tmp_path / "d").exists()


def _made(root: Path) -> Path:
    _source(root)
    return root


@pytest.fixture
def fresh_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    """hub_tls as in a process that has made no Hub session yet."""
    monkeypatch.setattr(hub_tls, "_early", None)
    monkeypatch.setattr(hub_tls, "_taken", False)


def test_the_early_tls_context_is_the_one_httpx2_makes(fresh_tls: None) -> None:
    """Certificates and host names verified, the same CA bundle as ``httpx2.Client()`` loads."""
    import httpx2

    hub_tls.start()
    ours = hub_tls.context()
    theirs = httpx2.Client()._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert ours.verify_mode == ssl.CERT_REQUIRED and ours.check_hostname
    assert ours.cert_store_stats() == theirs.cert_store_stats() and ours.cert_store_stats()["x509_ca"] > 0
    assert ours.get_ca_certs() == theirs.get_ca_certs()


def test_the_early_tls_context_made_without_httpx2_is_the_one_httpx2_makes(
    fresh_tls: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the settings' reading of ``SSL_CERT_FILE``/``SSL_CERT_DIR``, the context is made as
    httpcore2 makes it, without importing it: the same CA certificates, verification on — the
    system's bundle when neither is set, the named file's certificates when ``SSL_CERT_FILE`` is."""
    import httpx2

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.setattr(hub_tls, "_trust", None)
    hub_tls.start(HubEnvironment())
    ours = hub_tls.context()
    theirs = httpx2.create_ssl_context()
    assert ours.verify_mode == ssl.CERT_REQUIRED and ours.check_hostname
    assert ours.get_ca_certs() == theirs.get_ca_certs() and ours.cert_store_stats()["x509_ca"] > 1

    bundle = tmp_path / "one-ca.pem"  # a bundle of one of those certificates
    bundle.write_text(ssl.DER_cert_to_PEM_cert(ours.get_ca_certs(binary_form=True)[0]))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    monkeypatch.setattr(hub_tls, "_trust", None)
    monkeypatch.setattr(hub_tls, "_taken", False)
    hub_tls.start(HubEnvironment(ssl_cert_file=str(bundle)))
    ours = hub_tls.context()
    assert ours.cert_store_stats()["x509_ca"] == 1
    assert ours.get_ca_certs() == httpx2.create_ssl_context().get_ca_certs()


def test_the_first_hub_session_takes_the_early_context_and_a_later_one_makes_its_own(fresh_tls: None) -> None:
    """A renewed session (the library's ``close_session``) reads the CA bundle again, as httpx2 does,
    and opening a store again makes no context nobody would take."""
    from huggingface_hub.utils import close_session, get_session

    hub_client.ensure_bounded_session()
    close_session()
    hub_tls.start()
    early = hub_tls._early
    assert early is not None
    first = get_session()
    assert first._transport._pool._ssl_context is early.result()  # type: ignore[attr-defined]
    close_session()
    second = get_session()
    again = second._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert again is not early.result() and again.cert_store_stats() == early.result().cert_store_stats()
    hub_tls.start()
    assert hub_tls._early is None


@pytest.mark.skipif(not forkwork.available(), reason="the forked worker is Linux-only")
def test_a_forked_process_makes_a_tls_context_of_its_own(fresh_tls: None) -> None:
    """No context made in the parent is used in a forked child (a lock held by a parent thread at
    the fork would never be released there)."""
    hub_tls.start()
    early = hub_tls._early
    assert early is not None

    def theirs_is_new() -> bool:
        theirs = hub_tls.context()
        return theirs is not early.result() and theirs.verify_mode == ssl.CERT_REQUIRED

    assert in_forked_child(theirs_is_new)
    assert hub_tls.context() is early.result()


@pytest.mark.parametrize(
    ("repo_type", "path", "revision"),
    [
        ("dataset", "openclaw-backup/config", "main"),
        ("model", "p/data/ab/abcdef", "0123456789abcdef0123456789abcdef01234567"),
        ("dataset", "a dir/ünï cødé?#.txt", "refs/pr/1"),
        ("dataset", "x", "feature/a b"),
    ],
)
def test_resolve_urls_are_the_library_s(repo_type: str, path: str, revision: str) -> None:
    from huggingface_hub import hf_hub_url

    for endpoint in ("http://127.0.0.1:8123", "https://huggingface.co"):
        expected = hf_hub_url("ns/name", path, repo_type=repo_type, revision=revision, endpoint=endpoint)
        got = hub_files.resolve_url(endpoint, "ns/name", path, repo_type=repo_type, revision=revision)
        assert got == expected


def test_a_listing_is_the_library_s(hub_repo: HubRepo, tmp_path: Path) -> None:
    """The files :class:`RepoFiles` lists are those ``HfApi.list_repo_tree`` lists, at any depth,
    with folders left out; a missing folder lists nothing and a missing revision raises as before."""
    from huggingface_hub.errors import RevisionNotFoundError
    from huggingface_hub.hf_api import RepoFile

    run_backup(new_repo(hub_repo.open(create=True)), {"src": _made(tmp_path / "src")}, forked=False)
    files = hub_files.RepoFiles(hub_repo.server.url, hub_repo.repo_id, repo_type="dataset", token=TOKEN, timeout=10)
    api = hub_repo.api()
    for folder in (None, "openclaw-backup", "openclaw-backup/data", "openclaw-backup/keys"):
        theirs = [e.path for e in api.list_repo_tree(hub_repo.repo_id, folder, recursive=True, repo_type="dataset")
                  if isinstance(e, RepoFile)]  # fmt: skip
        ours = files.call("list", partial(files.list, folder, "main"))
        assert sorted(ours) == sorted(theirs) and theirs
    assert files.call("list", lambda: files.list("openclaw-backup/nothing-here", "main")) == []
    with pytest.raises(RevisionNotFoundError):
        files.list("openclaw-backup", "no-such-branch")
