"""The lean read path of a Hub repo (:mod:`openclaw_backup.backends.hub_files`): a restore reads,
lists and reads the head through plain GETs whose token, endpoint and environment the settings read
(:mod:`openclaw_backup.settings.hub`), importing neither ``huggingface_hub`` nor ``httpx2`` — and
what it sends and raises is what the library's way sends and raises.

Against the fake Hub (tests/support/hubserver): through the real CLI in a fresh interpreter for what
a process imports and which token it sends, in-process for the errors, each case read once the lean
way (the settings' :class:`HubEnvironment`) and once the library's way (none), compared field by field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from openclaw_backup.backends import open_backend
from openclaw_backup.backends.hf_repo import HfRepoBackend
from openclaw_backup.backends.options import HubEnvironment
from openclaw_backup.errors import BackupError, StoreError
from openclaw_backup.settings import Settings
from openclaw_backup.settings.hub import implicit_token, token_path
from tests.support.cli import cli_env, hub_env
from tests.support.hub import TOKEN, HubRepo
from tests.support.repos import new_repo, run_backup
from tests.support.trees import fingerprint
from tests.test_hub_startup import _made, _probe

pytestmark = pytest.mark.timeout(120)

HUB_LIBRARIES = ("huggingface_hub", "httpx2", "httpcore2")


def _restore(hub_repo: HubRepo, tmp_path: Path, **env: str) -> tuple[int, str, dict[str, Any]]:
    out, dest = tmp_path / "probe.json", tmp_path / "restored"
    proc = _probe(["--repo", hub_repo.address, "restore", "latest", "--target", str(dest)], env, out)
    seen = json.loads(out.read_text()) if out.exists() else {"modules": []}
    return proc.returncode, proc.stderr, seen


def test_a_restore_sends_the_stored_login_token_and_imports_no_hub_library(hub_repo: HubRepo, tmp_path: Path) -> None:
    """No token in the environment: the one ``hf auth login`` stored (``$XDG_CACHE_HOME/huggingface/token``)
    opens the private repo, as the library would send it; nothing of the library is imported."""
    src = _made(tmp_path / "src")
    run_backup(new_repo(hub_repo.open(create=True)), {"src": src}, forked=False)
    env = {k: v for k, v in cli_env(tmp_path, **hub_env(hub_repo.server.url, TOKEN)).items() if k != "HF_TOKEN"}
    stored = Path(env["XDG_CACHE_HOME"]) / "huggingface" / "token"
    stored.parent.mkdir(parents=True)
    stored.write_text(TOKEN + "\n")
    code, err, seen = _restore(hub_repo, tmp_path, **env)
    assert code == 0, err
    assert fingerprint(tmp_path / "restored" / "src") == fingerprint(src)
    assert [m for m in HUB_LIBRARIES if m in seen["modules"]] == []


def test_a_refused_restore_fails_as_the_library_s_way_fails(hub_repo: HubRepo, tmp_path: Path) -> None:
    """A wrong token on the lean path: the repository is not found (exit 10, the same message and
    hint as the library's error gives), and the library is imported only then, to raise it."""
    run_backup(new_repo(hub_repo.open(create=True)), {"src": _made(tmp_path / "src")}, forked=False)
    env = cli_env(tmp_path, **hub_env(hub_repo.server.url, "hf_not_the_token"))
    code, err, seen = _restore(hub_repo, tmp_path, **env)
    assert code == 10, err
    assert "repository not found (or the token cannot see it)" in err
    assert "huggingface_hub" in seen["modules"]  # to raise its error, as before


def _outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except BackupError as e:
        transient = e.transient if isinstance(e, StoreError) else None
        return "error", (type(e).__name__, e.message, e.hint, e.exit_code, transient, getattr(e, "retry_after", None))


def _both(hub_repo: HubRepo, what: Callable[[HfRepoBackend], Any], fault: dict[str, Any] | None = None,
          **options: Any) -> tuple[tuple[str, Any], tuple[str, Any]]:  # fmt: skip
    """``what`` on the backend opened the lean way and the library's way (the same fault each time)."""
    results = []
    for env in (HubEnvironment(), None):
        backend = open_backend(hub_repo.address, hub_repo.server.options(hub_env=env, retries=2, **options))
        inner = backend
        while not isinstance(inner, HfRepoBackend):
            inner = inner.inner  # type: ignore[attr-defined]
        if fault is not None:
            hub_repo.add_fault(**fault)
        try:
            results.append(_outcome(lambda b=inner: what(b)))  # type: ignore[misc]
        finally:
            hub_repo.server.clear_faults()
            backend.close()
    return results[0], results[1]


MISSING = "data/00/" + "0" * 64


@pytest.mark.parametrize(
    ("case", "what", "fault", "options"),
    [
        ("a missing object", lambda b: b.get(MISSING), None, {}),
        ("a missing folder", lambda b: b.list("damaged/"), None, {}),
        ("a listing", lambda b: b.list("keys/"), None, {}),
        ("the head", lambda b: b.read_head() is not None, None, {}),
        ("a wrong token: read", lambda b: b.get("config"), None, {"token": "hf_wrong"}),
        ("a wrong token: list", lambda b: b.list("keys/"), None, {"token": "hf_wrong"}),
        ("a wrong token: head", lambda b: b.read_head(), None, {"token": "hf_wrong"}),
        ("5xx on a read", lambda b: b.get("config"), {"kind": "resolve", "status": 503, "count": 9}, {}),
        ("5xx on a listing", lambda b: b.list("keys/"), {"kind": "tree", "status": 500, "count": 9}, {}),
        ("a 429 on the head", lambda b: b.read_head(), {"kind": "resolve", "status": 429, "retry_after": 7}, {}),
        ("a 403 on a listing", lambda b: b.list("keys/"), {"kind": "tree", "status": 403}, {}),
    ],
)
def test_the_lean_way_answers_as_the_library_s_way(
    hub_repo: HubRepo, tmp_path: Path, case: str, what: Callable[[HfRepoBackend], Any],
    fault: dict[str, Any] | None, options: dict[str, Any],
) -> None:  # fmt: skip
    """The same outcome — result, or our typed error with its message, hint, exit code, transience
    and Retry-After — whichever way a repo's file, listing or head is read."""
    run_backup(new_repo(hub_repo.open(create=True)), {"src": _made(tmp_path / "src")}, forked=False)
    lean, library = _both(hub_repo, what, fault, **options)
    assert lean == library, case
    if case.startswith("a missing"):
        assert lean[0] == ("error" if "object" in case else "ok")


def test_a_missing_revision_on_the_lean_way_is_the_library_s_error(hub_repo: HubRepo) -> None:
    """A listing of a branch that does not exist raises the library's own exception, which the repo
    backend reads as an empty repository (both ways)."""
    backend = hub_repo.open(create=True, hub_env=HubEnvironment())
    backend.revision = "no-such-branch"
    assert backend.list() == []
    assert backend.read_head() is None


# ---------------------------------------------------------------------------------------------
# The settings: what the library would read from the environment


def test_the_token_is_the_one_the_library_would_find(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert implicit_token(env) == (None, True)  # no login: no token, settled
    path = token_path(env)
    assert path == tmp_path / "cache" / "huggingface" / "token"
    path.parent.mkdir(parents=True)
    path.write_text("  hf_stored\r\n")
    assert implicit_token(env) == ("hf_stored", True)
    assert implicit_token({**env, "HUGGING_FACE_HUB_TOKEN": "hf_env"}) == ("hf_env", True)
    assert implicit_token({**env, "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1"}) == (None, True)
    assert implicit_token({**env, "HF_OIDC_RESOURCE": "x"}) == (None, False)  # only the library can exchange it
    home = tmp_path / "hf-home"
    assert token_path({**env, "HF_HOME": str(home)}) == home / "token"
    assert token_path({**env, "HF_HOME": str(home), "HF_TOKEN_PATH": str(tmp_path / "t")}) == tmp_path / "t"
    (path.parent / "stored_tokens").write_text("[web]\nhf_token = hf_stored\nrefresh_token = r\nexpires_at = 1\n")
    assert implicit_token(env) == (None, False)  # a browser login: the library refreshes it


def test_the_settings_hand_the_backends_what_the_libraries_would_read(tmp_path: Path) -> None:
    base = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "c")}
    options = Settings(base).backend_options()
    assert options.hf_endpoint == "https://huggingface.co" and options.token is None
    assert options.hub_env == HubEnvironment()
    env = {**base, "HF_TOKEN": "hf_t", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",
           "https_proxy": "http://proxy:3128", "SSL_CERT_FILE": "/x.pem"}  # fmt: skip
    options = Settings(env).backend_options()
    assert (options.token, options.hf_endpoint) == ("hf_t", "http://127.0.0.1:9")
    assert options.hub_env == HubEnvironment(offline=True, proxied=True, ssl_cert_file="/x.pem")
    assert Settings({**base, "NO_PROXY": "127.0.0.1"}).backend_options().hub_env == HubEnvironment()


def test_over_https_the_lean_way_verifies_the_certificate(hub_repo: HubRepo, tmp_path: Path) -> None:
    """Through TLS (a front on 127.0.0.1 with a certificate no CA here vouches for): with that
    certificate named by ``SSL_CERT_FILE`` the restore reads through the front and is exact, still
    without the Hub library; without it the restore fails at the first request, loudly (a store
    error naming the certificate), and writes nothing."""
    from tests.support.tls import TlsFront, self_signed

    src = _made(tmp_path / "src")
    run_backup(new_repo(hub_repo.open(create=True)), {"src": src}, forked=False)
    cert, key = self_signed(tmp_path)
    front = TlsFront(("127.0.0.1", int(hub_repo.server.url.rsplit(":", 1)[1])), cert, key)
    try:
        endpoint = f"https://127.0.0.1:{front.port}"
        refused = cli_env(tmp_path / "refused", **hub_env(endpoint, TOKEN))
        code, err, seen = _restore(hub_repo, tmp_path / "refused", **refused)
        assert code != 0 and "certificate" in err.lower(), err
        assert not (tmp_path / "refused" / "restored").exists()
        assert front.handshakes == 0  # the client refused every one …
        assert front.refused <= 8, front.refused  # … each request once (the first round's), not retried

        trusted = cli_env(tmp_path, **hub_env(endpoint, TOKEN), SSL_CERT_FILE=str(cert))
        code, err, seen = _restore(hub_repo, tmp_path, **trusted)
        assert code == 0, err
        assert fingerprint(tmp_path / "restored" / "src") == fingerprint(src)
        assert front.handshakes >= 1
        assert [m for m in HUB_LIBRARIES if m in seen["modules"]] == []
    finally:
        front.close()


def test_an_untrusted_certificate_fails_at_once_the_lean_way_and_the_library_s(
    hub_repo: HubRepo, tmp_path: Path
) -> None:
    """A certificate that does not verify is no transient failure: one attempt, then a permanent
    store error whose hint names ``SSL_CERT_FILE`` — both ways, with retries allowed (it used to be
    retried with backoff for ~30 s: 150 refused handshakes for one restore)."""
    from openclaw_backup.backends.hub_bounds import UNTRUSTED_HINT
    from tests.support.tls import TlsFront, self_signed

    cert, key = self_signed(tmp_path)
    front = TlsFront(("127.0.0.1", int(hub_repo.server.url.rsplit(":", 1)[1])), cert, key)
    try:
        for env in (HubEnvironment(), None):
            before = front.refused
            options = hub_repo.server.options(hf_endpoint=f"https://127.0.0.1:{front.port}", hub_env=env, retries=5)
            backend = open_backend(hub_repo.address, options)
            try:
                with pytest.raises(StoreError) as caught:
                    backend.get("config")
            finally:
                backend.close()
            assert not caught.value.transient and caught.value.hint == UNTRUSTED_HINT, (env, caught.value)
            assert "certificate" in caught.value.message.lower()
            # Every attempt was made before the error was raised; the front counts each refusal a
            # moment later, in its own thread.
            deadline = time.monotonic() + 5
            while front.refused == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.2)
            assert front.refused - before == 1, (env, front.refused - before)
    finally:
        front.close()
