"""Reads of an S3 bucket without botocore: SigV4-signed plain GETs over :mod:`.plain_get`'s kept-alive
connections — an object (or a range of it), the head with its ETag, and a listing.

Words used here:

* **plain S3 read** — one GET signed here with AWS Signature Version 4 (``Authorization`` header,
  ``x-amz-date``, ``x-amz-content-sha256`` of the empty body, ``x-amz-security-token`` with a
  session token; the ``Range`` header is sent unsigned, as botocore sends it), path-style
  (``<endpoint>/<bucket>/<key>``, the addressing :mod:`.s3` configures botocore with). botocore's
  per-request machinery (its events, serialisers, parsers, its own connection pool) costs a cold
  restore's ~170 ranged reads more CPU than their bytes; its import and its client's creation cost
  some 0.25 s before the first request.
* **usable** — :func:`plain_reader` makes a reader only when everything a signature needs was
  given (access key, secret, region and endpoint) and no proxy applies to the endpoint
  (``BackendOptions.s3_proxy``: the settings read ``HTTP(S)_PROXY``/``NO_PROXY`` as botocore
  does): otherwise the caller keeps botocore, which finds credentials through its default chain
  and goes through the proxy. An https endpoint is verified against the system's CA certificates;
  one whose certificate does not verify so (a private CA that botocore is told of, through
  ``AWS_CA_BUNDLE`` or a profile's ``ca_bundle``) turns the plain reads off for that store:
  :class:`PlainReads`, mixed into :class:`.s3.S3Backend`, then reads through botocore, which
  verifies it as it always did.
* **one TLS context** — the CA certificates are loaded once for a store and the stores reopened
  from it (:class:`TlsContext`), the forked worker of a restore included, which would otherwise
  load them again before its first read; connections are kept alive (:mod:`.plain_get`), so an
  https store costs one handshake per connection, not per read.

It returns answers as they came (:class:`~.plain_get.Answer`, any status), which :mod:`.s3`
translates as it translates botocore's refusals; a network failure, a timeout or a body cut short
raises a transient :class:`~openclaw_backup.errors.StoreError` (retried by the wrappers).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import ssl
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, unquote_plus, urlsplit
from xml.etree import ElementTree

from ..errors import BackupError, StoreError
from .base import HEAD_NAME, Head
from .plain_get import Answer, GetPool, TransportFailure

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_MAX_KEYS = "1000"


class TlsContext:
    """The TLS context of a store's plain reads, shared by the store and every store reopened from
    it, the forked worker's included (see the module docstring): made once, on the first https
    connection — reads that start together wait for that one rather than each loading the CA
    certificates (some 25 ms of CPU each, far more on a busy machine). Thread-safe; a fork waits
    for a context being made (OpenSSL's locks taken meanwhile would stay taken in the child)."""

    def __init__(self) -> None:
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()
        _CONTEXTS.add(self)

    def __call__(self) -> ssl.SSLContext:
        with self._lock:
            if self._context is None:
                self._context = _default_tls()
            return self._context


_CONTEXTS: weakref.WeakSet[TlsContext] = weakref.WeakSet()
_HELD: list[TlsContext] = []  # the ones whose lock the fork under way holds


def _hold_before_fork() -> None:
    for tls in list(_CONTEXTS):
        if tls._lock.acquire(timeout=30.0):  # bounded: a fork never hangs on it
            _HELD.append(tls)


def _release_after_fork() -> None:
    while _HELD:
        _HELD.pop()._lock.release()


def _fresh_locks_in_child() -> None:
    _HELD.clear()
    for tls in list(_CONTEXTS):
        tls._lock = threading.Lock()


os.register_at_fork(before=_hold_before_fork, after_in_parent=_release_after_fork, after_in_child=_fresh_locks_in_child)


def plain_reader(
    *,
    endpoint: str | None,
    region: str | None,
    access_key: str | None,
    secret_key: str | None,
    session_token: str | None,
    bucket: str,
    timeout: float,
    proxied: bool,
    tls: TlsContext,
) -> PlainS3 | None:
    """A reader of ``bucket`` when it is usable (see the module docstring), else None. ``proxied``:
    a proxy applies to the endpoint (the settings decide, from the environment)."""
    if not (endpoint and region and access_key and secret_key) or proxied:
        return None
    if urlsplit(endpoint).scheme not in ("http", "https"):
        return None
    return PlainS3(endpoint, region, access_key, secret_key, session_token, bucket, timeout, tls)


def _q(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


class PlainS3:
    """Signed plain GETs of one bucket (see the module docstring). Thread-safe."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        access_key: str,
        secret_key: str,
        session_token: str | None,
        bucket: str,
        timeout: float,
        tls: TlsContext,
    ) -> None:
        parts = urlsplit(endpoint)
        self._base = f"{parts.scheme}://{parts.netloc}"
        self._host = parts.netloc
        self._root = parts.path.rstrip("/") + "/" + _q(bucket)
        self._region = region
        self._access_key, self._secret = access_key, secret_key
        self._token = session_token
        self._timeout = timeout
        self._pool = GetPool(tls)
        self._keys: tuple[str, bytes] | None = None  # (day, its signing key)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.close()

    def _signing_key(self, day: str) -> bytes:
        with self._lock:
            if self._keys is not None and self._keys[0] == day:
                return self._keys[1]
        key = ("AWS4" + self._secret).encode()
        for part in (day, self._region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        with self._lock:
            self._keys = (day, key)
        return key

    def _signed(self, path: str, query: list[tuple[str, str]]) -> tuple[str, dict[str, str]]:
        """The URL and headers of a signed GET of ``path`` (already encoded) with ``query``."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        canonical_query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query))
        headers = {"host": self._host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": stamp}
        if self._token:
            headers["x-amz-security-token"] = self._token
        names = sorted(headers)
        signed = ";".join(names)
        canonical = "\n".join(
            ["GET", path, canonical_query, *(f"{n}:{headers[n].strip()}" for n in names), "", signed, EMPTY_SHA256]
        )
        scope = f"{stamp[:8]}/{self._region}/s3/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(stamp[:8]), to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
        )
        headers["accept-encoding"] = "identity"
        url = self._base + path + (f"?{canonical_query}" if canonical_query else "")
        return url, headers

    def _send(self, url: str, headers: dict[str, str], what: str) -> Answer:
        try:
            return self._pool.get(url, headers, timeout=self._timeout)
        except TransportFailure as e:
            if isinstance(e.__cause__, ssl.SSLCertVerificationError):
                raise NotTrusted(str(e)) from e
            raise StoreError(f"{what}: cannot reach {self._base}: {e}", transient=True) from e

    def get(self, key: str, *, byte_range: str | None = None, what: str) -> Answer:
        """GET object ``key`` (``byte_range``: a ``Range`` header's value, e.g. ``bytes=0-99``); a
        network failure raises a transient :class:`StoreError` (about ``what``)."""
        url, headers = self._signed(f"{self._root}/{_q(key, '/-_.~')}", [])
        if byte_range:
            headers["range"] = byte_range
        return self._send(url, headers, what)

    def list_page(self, prefix: str, token: str | None, *, what: str) -> tuple[Answer, list[str], str | None]:
        """One page of ListObjectsV2 under ``prefix``: the answer, its keys (when it succeeded) and
        the continuation token of the next page (None on the last)."""
        query = [("list-type", "2"), ("prefix", prefix), ("encoding-type", "url"), ("max-keys", _MAX_KEYS)]
        if token is not None:
            query.append(("continuation-token", token))
        url, headers = self._signed(self._root, query)
        answer = self._send(url, headers, what)
        if answer.status != 200:
            return answer, [], None
        root = ElementTree.fromstring(answer.body)
        keys: list[str] = []
        truncated, following = False, None
        for child in root:
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "Contents":
                for field in child:
                    if field.tag.rsplit("}", 1)[-1] == "Key" and field.text is not None:
                        keys.append(unquote_plus(field.text))
            elif tag == "IsTruncated":
                truncated = (child.text or "").strip().lower() == "true"
            elif tag == "NextContinuationToken":
                following = child.text
        return answer, keys, following if truncated and following else None


def error_code(answer: Answer) -> tuple[str, str]:
    """The ``Code`` and ``Message`` of an S3 error answer's XML body ("" when it has none)."""
    if not answer.body:
        return "", ""
    try:
        root = ElementTree.fromstring(answer.body)
    except ElementTree.ParseError:
        return "", ""
    found = {child.tag.rsplit("}", 1)[-1]: (child.text or "") for child in root}
    return found.get("Code", ""), found.get("Message", "")


def _default_tls() -> ssl.SSLContext:
    """The system's CA certificates (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured by OpenSSL). A
    store whose certificate they do not verify (none installed, a private CA) is read through
    botocore instead (:class:`NotTrusted`), which finds its own."""
    return ssl.create_default_context()


class NotTrusted(Exception):
    """The endpoint's TLS certificate did not verify against the CA certificates here; botocore's
    own CA settings (``AWS_CA_BUNDLE``, a profile's ``ca_bundle``) may trust it."""


class PlainReads:
    """The reads of :class:`.s3.S3Backend` through a :class:`PlainS3` (mixed into it): refusals
    translated by its ``_refused``, as botocore's are. A read whose endpoint's certificate does not
    verify here turns the plain reads off for good (:meth:`_plainly`): that read and every later one
    go through botocore."""

    _plain: PlainS3 | None
    root: str
    location: str

    def _refused(self, what: str, code: str, status: int, headers: dict[str, str], message: str) -> BackupError:
        raise NotImplementedError

    @contextmanager
    def _plainly(self) -> Iterator[None]:
        """Run plain reads; on :class:`NotTrusted`, stop them (the caller's code after the block,
        botocore's, runs instead)."""
        try:
            yield
        except NotTrusted:
            plain, self._plain = self._plain, None
            if plain is not None:
                plain.close()

    def _plain_refused(self, answer: Answer, what: str) -> tuple[str, BackupError]:
        """The error code of a refusal, and the error it is."""
        code, message = error_code(answer)
        headers = {k.lower(): v for k, v in answer.headers.items()}
        return code, self._refused(what, code, answer.status, headers, message)

    def _plain_get(self, plain: PlainS3, name: str, key: str, offset: int, length: int | None) -> bytes:
        ranged = bool(offset) or length is not None
        spec = f"bytes={offset}-" + (str(offset + length - 1) if length is not None else "") if ranged else None
        answer = plain.get(key, byte_range=spec, what=f"reading {name}")
        if answer.status in (200, 206):
            if ranged and answer.status == 200:  # the store ignored the range
                return answer.body[offset : None if length is None else offset + length]
            return answer.body
        code, error = self._plain_refused(answer, f"reading {name}")
        if answer.status == 416 or code == "InvalidRange":
            return b""  # the range starts at or past the end: a short read of nothing
        raise error

    def _plain_list(self, plain: PlainS3, prefix: str) -> list[str]:
        keys: list[str] = []
        token: str | None = None
        what = f"listing {prefix or 'objects'}"
        while True:
            answer, page, token = plain.list_page(self.root + prefix, token, what=what)
            if answer.status != 200:
                raise self._plain_refused(answer, what)[1]
            keys += page
            if token is None:
                return keys

    def _plain_head(self, plain: PlainS3) -> Head | None:
        answer = plain.get(self.root + HEAD_NAME, what="reading the head")
        if answer.status == 200:
            etag = answer.headers.get("ETag")
            if not etag:
                raise StoreError(f"reading the head of {self.location}: the store sent no ETag")
            return Head(etag, answer.body)
        code, error = self._plain_refused(answer, "reading the head")
        if code == "NoSuchKey" or (answer.status == 404 and code != "NoSuchBucket"):
            return None
        raise error
