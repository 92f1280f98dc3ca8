"""A repository in an S3-compatible bucket: AWS S3, Cloudflare R2, MinIO, SeaweedFS, the Hub's S3 gateway.

Address: ``s3://<bucket>[/<prefix>]``. Object ``name`` lives at key ``<prefix>/<name>``; the head at
``<prefix>/head``. The endpoint, region and credentials come from :class:`BackendOptions`; when the
credentials are not given, botocore's own default chain finds them (this module never reads the
environment itself).

How the contract is met:

* **Immutable objects** are written with ``If-None-Match: *``. A ``412`` means the name exists
  already; names are content-addressed, so that is a successful no-op. A single PUT is atomic on
  S3, so a crash leaves the whole object or none.
* **The head** is replaced with ``If-Match: <ETag>`` (created with ``If-None-Match: *`` when
  ``expect`` is None); its **version** is its ETag. A ``412`` (or ``409`` from a racing conditional
  write, or ``404`` when the expected head vanished) is a :class:`ConflictError`. The ETag is the
  MD5 of the bytes on most stores, so a head rewritten with identical bytes keeps its version; that
  is harmless because the repository's state is a function of the head's bytes (the local backend's
  version has the same property).
* **Lost responses.** botocore never retries here (``total_max_attempts=1``): a silent re-send of a
  conditional PUT whose first attempt landed would come back as a false conflict. When a head write
  times out, its connection drops or the store answers 5xx, the head is re-read: our bytes mean
  the publication landed; the expected version still in place means it did not, and the
  conditional PUT is sent again (a conditional re-send can never overwrite someone else's head);
  anything else is a conflict.
* **Deletes** of a publication happen after the head was replaced (``atomic_batch=False``), with
  batched ``DeleteObjects``. They are best effort once the head landed — the publication *has*
  happened and is reported as such; names that could not be deleted remain unreferenced garbage
  for the next prune.

``compare_and_swap=True`` relies on the store honouring conditional writes: AWS S3 (``If-None-Match``
since August 2024, ``If-Match`` since November 2024), Cloudflare R2, MinIO, SeaweedFS (checked by
the test suite, including under racing writers) and the Hub's S3 gateway. A store that ignores the
headers would silently turn publication into last-writer-wins, so opening with ``create=True`` (the
initialisation of a repository) first runs :meth:`S3Backend.check_conditional_writes` and refuses
such a store.

Reads (``get``, ``read_head``, ``list``) go through :mod:`.s3_plain` — SigV4-signed plain GETs, no
botocore — when the options name the credentials, region and endpoint; botocore is imported and its
client made on the first call that needs it (writes, ``size``, other stores), never by a restore.

Errors are translated at this boundary (``raise … from``): ``NoSuchKey``/404 →
:class:`NotFoundError`; ``NoSuchBucket`` → :class:`RepositoryNotFoundError`; 403 →
:class:`StoreError` with a hint about credentials; 429/``SlowDown``/503/5xx and connection
failures → ``StoreError(transient=True)`` (or :class:`QuotaError` when the store asks to wait more
than a minute), but a TLS certificate that does not verify → a permanent one with a hint about
``AWS_CA_BUNDLE``; any other refusal → a permanent :class:`StoreError`.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import os
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import (
    BackupError,
    ConflictError,
    NotFoundError,
    QuotaError,
    RepositoryNotFoundError,
    StoreError,
    UsageError,
)
from .base import HEAD_NAME, Backend, Capabilities, Head, check_name
from .options import BackendOptions
from .s3_plain import PlainReads, PlainS3, TlsContext, plain_reader

if TYPE_CHECKING:
    import botocore.exceptions as bex
    import botocore.session
else:

    class _Exceptions:
        """``botocore.exceptions``, imported when first asked for: by a botocore call's failure (a
        store read through plain S3 reads never imports botocore)."""

        def __getattr__(self, name: str) -> Any:
            import botocore.exceptions

            return getattr(botocore.exceptions, name)

    bex = _Exceptions()

_DELETE_BATCH = 1000  # the S3 limit of DeleteObjects
_PUBLISH_ATTEMPTS = 3  # conditional sends of one head write whose outcome stayed unknown
_QUOTA_AFTER = 60.0  # a Retry-After longer than this is a quota, not a blip
_PROBE_PREFIX = ".cas-probe-"  # keys of check_conditional_writes; never listed
_CREDENTIALS_HINT = (
    "check the S3 access key and secret (and that they may read, write, list and delete in this bucket), "
    "the region, and the endpoint"
)
_REGION_HINT = "check the region (s3 region option) and the endpoint of the bucket"
_HINTS = {
    "PermanentRedirect": _REGION_HINT,
    "AuthorizationHeaderMalformed": _REGION_HINT,
    "IllegalLocationConstraintException": _REGION_HINT,
    "RequestTimeTooSkewed": "the clock of this machine is off; S3 refuses requests signed at a skewed time",
}

# One botocore session per process: it loads the S3 service model once (a new session costs ~0.3 s of
# JSON parsing per backend). Sessions are not thread-safe, so client creation holds a lock. botocore,
# not boto3: a client is all we use, and boto3's resource layer costs ~0.1 s to import.
_SESSION_LOCK = threading.Lock()
_SESSION: botocore.session.Session | None = None


def _unlock_in_child() -> None:
    # A process forked while another thread held the lock would wait for it forever.
    global _SESSION_LOCK
    _SESSION_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_unlock_in_child)


@dataclass(frozen=True)
class S3Address:
    """A parsed ``s3://<bucket>[/<prefix>]`` address; ``prefix`` has no leading or trailing ``/``."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, address: str) -> S3Address:
        if not address.startswith("s3://"):
            raise UsageError(f"not an S3 address: {address!r}", hint="use s3://<bucket>[/<prefix>]")
        bucket, _, prefix = address[len("s3://") :].partition("/")
        prefix = prefix.strip("/")
        if not bucket or (prefix and any(p in ("", ".", "..") for p in prefix.split("/"))):
            raise UsageError(f"invalid S3 address {address!r}", hint="use s3://<bucket>[/<prefix>]")
        return cls(bucket, prefix)


def open_s3(address: str, options: BackendOptions) -> S3Backend:
    """Open ``s3://<bucket>[/<prefix>]``; with ``options.create`` make the bucket when missing."""
    backend = S3Backend(S3Address.parse(address), options)
    if options.create:
        backend.ensure_bucket()
        backend.check_conditional_writes()
    return backend


_UNTRUSTED_HINT = (
    "the endpoint's TLS certificate does not verify against the CA certificates here; name the ones "
    "to trust with AWS_CA_BUNDLE (or a profile's ca_bundle)"
)


def _new_client(options: BackendOptions, *, max_connections: int) -> Any:
    """An S3 client; credentials and region from ``options``, else from botocore's default chain.
    botocore is imported here, on first use: a restore that reads through plain S3 reads needs none."""
    global _SESSION
    import botocore.session
    from botocore.config import Config

    config = Config(
        connect_timeout=options.timeout,
        read_timeout=options.timeout,
        retries={"total_max_attempts": 1, "mode": "standard"},  # retries live in wrappers / publish
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        max_pool_connections=max_connections + 2,
    )
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = botocore.session.Session()
        return _SESSION.create_client(
            "s3",
            endpoint_url=options.s3_endpoint,
            region_name=options.s3_region,
            aws_access_key_id=options.s3_access_key,
            aws_secret_access_key=options.s3_secret_key,
            aws_session_token=options.s3_session_token,
            config=config,
        )


def _client_error_fields(e: bex.ClientError) -> tuple[str, int, dict[str, str]]:
    err = e.response.get("Error", {})
    meta = e.response.get("ResponseMetadata", {})
    return str(err.get("Code", "")), int(meta.get("HTTPStatusCode", 0) or 0), dict(meta.get("HTTPHeaders", {}))


def _retry_after(headers: dict[str, str]) -> float | None:
    try:
        return float(headers.get("retry-after", ""))
    except ValueError:
        return None


class S3Backend(PlainReads, Backend):
    """See the module docstring. Thread-safe: one botocore client shared by all calls."""

    # max_connections: a restore's ranged reads in flight together (each waits a round trip)
    capabilities = Capabilities(compare_and_swap=True, atomic_batch=False, max_connections=32)

    def __init__(self, address: S3Address, options: BackendOptions) -> None:
        self.bucket = address.bucket
        self.root = f"{address.prefix}/" if address.prefix else ""
        self.endpoint = options.s3_endpoint
        self.location = f"s3://{address.bucket}/{address.prefix}".rstrip("/")
        if self.endpoint:
            self.location += f" at {self.endpoint}"
        self.region = options.s3_region
        self._options = options
        self._made: Any = None  # the botocore client, made on first use (see _client)
        self._made_lock = threading.Lock()
        self._tls = TlsContext()  # shared with the stores reopened from this one (see s3_plain)
        self._plain = self._new_plain()
        self._closed = False

    def _new_plain(self) -> PlainS3 | None:
        o = self._options
        return plain_reader(
            endpoint=o.s3_endpoint,
            region=o.s3_region,
            access_key=o.s3_access_key,
            secret_key=o.s3_secret_key,
            session_token=o.s3_session_token,
            bucket=self.bucket,
            timeout=o.timeout,
            proxied=o.s3_proxy is not None,
            tls=self._tls,
        )

    @property
    def _client(self) -> Any:
        """The botocore client (made on first use: reads through plain S3 reads need none)."""
        client = self._made
        if client is None:
            with self._made_lock:
                client = self._made
                if client is None:
                    client = self._made = _new_client(self._options, max_connections=self.capabilities.max_connections)
        return client

    @_client.setter
    def _client(self, client: Any) -> None:  # tests put a proxy of the client in its place
        self._made = client

    def reopen(self) -> S3Backend:
        """The same bucket and prefix through a new client (its own connection pool)."""
        fresh = copy.copy(self)
        fresh._made, fresh._made_lock = None, threading.Lock()
        fresh._plain = self._new_plain()
        fresh._closed = False
        return fresh

    # -- errors ---------------------------------------------------------------------------------

    def _error(self, e: Exception, what: str) -> BackupError:
        """Translate a botocore exception raised while doing ``what`` into one of ours."""
        if isinstance(e, bex.ClientError):
            code, status, headers = _client_error_fields(e)
            message = e.response.get("Error", {}).get("Message", "refused")
            return self._refused(what, code, status, headers, message)
        if isinstance(e, bex.NoCredentialsError | bex.PartialCredentialsError):
            return StoreError(f"{what}: no S3 credentials found", hint=_CREDENTIALS_HINT)
        if isinstance(e, bex.SSLError):  # a ConnectionError, but no retry makes a certificate verify
            return StoreError(f"{what}: cannot reach {self.location}: {e}", hint=_UNTRUSTED_HINT)
        if isinstance(e, bex.ConnectionError | bex.HTTPClientError | bex.IncompleteReadError):
            return StoreError(f"{what}: cannot reach {self.location}: {e}", transient=True)
        return StoreError(f"{what}: {e}")

    def _refused(self, what: str, code: str, status: int, headers: dict[str, str], message: str) -> BackupError:
        """Translate the store's refusal (its error ``code``, HTTP ``status``, lower-case ``headers``)."""
        detail = f"{what}: {code or status} ({status})"
        if code == "NoSuchBucket":
            return RepositoryNotFoundError(
                f"bucket {self.bucket!r} does not exist at {self.endpoint or 'AWS S3'}",
                hint="create the bucket, or initialise the repository so it is created",
            )
        if code in ("NoSuchKey", "NotFound") or status == 404:
            return NotFoundError(f"{what}: no such object in {self.location}")
        if status == 403 or code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoreError(f"{detail}: access denied by {self.location}", hint=_CREDENTIALS_HINT)
        if status in (429, 503) or code in ("SlowDown", "Throttling", "TooManyRequests", "RequestLimitExceeded"):
            wait = _retry_after(headers)
            if wait is not None and wait > _QUOTA_AFTER:
                return QuotaError(f"{detail}: the store asks to wait {wait:.0f} s", retry_after=wait)
            return StoreError(f"{detail}: the store is throttling requests", transient=True)
        if status >= 500 or code in ("InternalError", "ServiceUnavailable", "RequestTimeout"):
            return StoreError(f"{detail}: server error", transient=True)
        return StoreError(f"{detail}: {message or 'refused'}", hint=_HINTS.get(code))

    def _key(self, name: str) -> str:
        return self.root + check_name(name)

    # -- objects --------------------------------------------------------------------------------

    def get(self, name: str, *, offset: int = 0, length: int | None = None) -> bytes:
        key = self._key(name)
        if offset < 0 or (length is not None and length < 0):
            raise UsageError(f"invalid range {offset}+{length} of {name}")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length == 0:
            self.size(name)  # still say NotFound for a missing object
            return b""
        if self._plain is not None:
            with self._plainly():
                return self._plain_get(self._plain, name, key, offset, length)
        if length is not None:
            kwargs["Range"] = f"bytes={offset}-{offset + length - 1}"
        elif offset:
            kwargs["Range"] = f"bytes={offset}-"
        try:
            response = self._client.get_object(**kwargs)
            return bytes(response["Body"].read())
        except bex.ClientError as e:
            code, status, _ = _client_error_fields(e)
            if status == 416 or code == "InvalidRange":
                return b""  # the range starts at or past the end: a short read of nothing
            raise self._error(e, f"reading {name}") from e
        except bex.BotoCoreError as e:
            raise self._error(e, f"reading {name}") from e

    def size(self, name: str) -> int:
        try:
            return int(self._client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"])
        except (bex.ClientError, bex.BotoCoreError) as e:
            raise self._error(e, f"sizing {name}") from e

    def list(self, prefix: str = "") -> list[str]:
        if self._plain is not None:
            with self._plainly():
                return self._names(self._plain_list(self._plain, prefix))
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.root + prefix
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", ())]
        except (bex.ClientError, bex.BotoCoreError) as e:
            raise self._error(e, f"listing {prefix or 'objects'}") from e
        return self._names(keys)

    def _names(self, keys: Iterable[str]) -> builtins.list[str]:
        """The object names of ``keys`` (under the root), sorted: not the head, folder markers or
        write probes."""
        head_key = self.root + HEAD_NAME
        names = (key[len(self.root) :] for key in keys if key != head_key and not key.endswith("/"))
        return sorted(name for name in names if not name.startswith(_PROBE_PREFIX))

    def put(self, name: str, data: bytes) -> None:
        key = self._key(name)
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data), IfNoneMatch="*")
        except bex.ClientError as e:
            code, status, _ = _client_error_fields(e)
            if status == 412 or code == "PreconditionFailed":
                return  # the object exists: content-addressed, so it holds these bytes
            if status == 409:  # a racing conditional write of the same name; a retry will see 412
                raise StoreError(f"writing {name}: concurrent write of the same object", transient=True) from e
            raise self._error(e, f"writing {name}") from e
        except bex.BotoCoreError as e:
            raise self._error(e, f"writing {name}") from e

    # -- head -----------------------------------------------------------------------------------

    def read_head(self) -> Head | None:
        if self._plain is not None:
            with self._plainly():
                return self._plain_head(self._plain)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.root + HEAD_NAME)
            data = bytes(response["Body"].read())
        except bex.ClientError as e:
            code, status, _ = _client_error_fields(e)
            if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                return None
            raise self._error(e, "reading the head") from e
        except bex.BotoCoreError as e:
            raise self._error(e, "reading the head") from e
        return Head(str(response["ETag"]), data)

    def publish(self, *, head: bytes, expect: str | None, deletes: Sequence[str] = ()) -> str:
        names = [check_name(n) for n in deletes]
        version = self._swap_head(bytes(head), expect)
        self._delete_after_publish(names)
        return version

    def _swap_head(self, head: bytes, expect: str | None) -> str:
        """The conditional PUT of the head, resolving lost responses by re-reading it."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.root + HEAD_NAME, "Body": head}
        if expect == "":  # no ETag is empty; an empty If-Match would be dropped, making the PUT unconditional
            raise ConflictError("the repository head moved while we worked (no head has an empty version)")
        if expect is None:
            kwargs["IfNoneMatch"] = "*"
        else:
            kwargs["IfMatch"] = expect
        unknown: BackupError | None = None  # why the previous attempt's outcome is unknown
        for _ in range(_PUBLISH_ATTEMPTS):
            try:
                etag = self._client.put_object(**kwargs).get("ETag")
                if etag:
                    return str(etag)
                # A store that does not echo the ETag: the write landed; learn its version.
                current = self._read_head_for_publish(StoreError("no ETag in the answer to the head write"))
                if current is not None and current.data == head:
                    return current.version
                # Already replaced by the next writer: our version is what a plain PUT's ETag is (a
                # wrong guess only makes a later publish against it fail with a conflict).
                return f'"{hashlib.md5(head, usedforsecurity=False).hexdigest()}"'
            except bex.ClientError as e:
                code, status, _ = _client_error_fields(e)
                if status in (409, 412) or code in ("PreconditionFailed", "NoSuchKey"):
                    # The condition failed. After an unknown outcome it may be our own earlier send.
                    if unknown is not None:
                        current = self._read_head_for_publish(e)
                        if current is not None and current.data == head:
                            return current.version
                    raise ConflictError(
                        "the repository head moved while we worked (another writer)",
                        hint="the operation re-plans against the new head; retry if it gave up",
                    ) from e
                err = self._error(e, "writing the head")
                if not (isinstance(err, StoreError) and err.transient):
                    raise err from e
                unknown = err
            except bex.BotoCoreError as e:
                err = self._error(e, "writing the head")
                if not (isinstance(err, StoreError) and err.transient):
                    raise err from e
                unknown = err
            # Outcome unknown: the write may or may not have landed. Look before sending again.
            current = self._read_head_for_publish(unknown)
            if current is not None and current.data == head:
                return current.version
            if (current.version if current else None) != expect:
                raise ConflictError("the repository head moved while our publication was in flight") from unknown
            # Still the expected head: our write did not land (yet); a conditional re-send is safe.
        raise StoreError(
            f"writing the head of {self.location}: no answer after {_PUBLISH_ATTEMPTS} attempts",
            transient=True,
            hint="the head was left unchanged; the publication can be retried",
        ) from unknown

    def _read_head_for_publish(self, cause: BaseException) -> Head | None:
        try:
            return self.read_head()
        except StoreError as e:
            raise StoreError(
                f"writing the head of {self.location}: the outcome is unknown and the head cannot be read back",
                transient=e.transient,
                hint="read the repository again before publishing (the publication may have landed)",
            ) from cause

    # -- deletes --------------------------------------------------------------------------------

    def _delete_keys(self, names: Sequence[str]) -> tuple[builtins.list[str], BackupError | None]:
        """Delete ``names`` in batches; return the names that failed and the last error.

        Missing names are not failures. A missing bucket is raised at once.
        """
        failed: builtins.list[str] = []
        error: BackupError | None = None
        for i in range(0, len(names), _DELETE_BATCH):
            batch = names[i : i + _DELETE_BATCH]
            objects = [{"Key": self._key(n)} for n in batch]
            try:
                response = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
            except (bex.ClientError, bex.BotoCoreError) as e:
                error = self._error(e, f"deleting {len(batch)} objects")
                if isinstance(error, RepositoryNotFoundError):
                    raise error from e
                failed.extend(batch)
                continue
            for item in response.get("Errors", ()):
                if item.get("Code") != "NoSuchKey":
                    failed.append(str(item.get("Key", ""))[len(self.root) :])
                    error = StoreError(f"deleting {item.get('Key')}: {item.get('Code')} {item.get('Message', '')}")
        return failed, error

    def _delete_after_publish(self, names: Sequence[str]) -> None:
        """Best effort: what fails stays behind as unreferenced garbage for the next prune."""
        if names:
            try:
                self._delete_keys(names)
            except BackupError:
                pass

    def delete_unpublished(self, names: Sequence[str]) -> None:
        failed, error = self._delete_keys([check_name(n) for n in names])
        if failed:
            raise StoreError(
                f"could not delete {len(failed)} objects from {self.location} (first: {failed[0]})",
                transient=isinstance(error, StoreError) and error.transient,
                hint=(error.hint if error else None) or _CREDENTIALS_HINT,
            ) from error

    # -- setup ----------------------------------------------------------------------------------

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (``create=True``)."""
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except bex.ClientError as e:
            code, status, _ = _client_error_fields(e)
            if status != 404 and code not in ("NoSuchBucket", "NotFound"):
                raise self._error(e, f"checking bucket {self.bucket}") from e
        except bex.BotoCoreError as e:
            raise self._error(e, f"checking bucket {self.bucket}") from e
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region and self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except bex.ClientError as e:
            code, _, _ = _client_error_fields(e)
            if code != "BucketAlreadyOwnedByYou":
                raise self._error(e, f"creating bucket {self.bucket}") from e
        except bex.BotoCoreError as e:
            raise self._error(e, f"creating bucket {self.bucket}") from e

    def check_conditional_writes(self) -> None:
        """Refuse a store that ignores ``If-None-Match``/``If-Match`` (it would make publication unsafe).

        Writes a probe object twice with ``If-None-Match: *`` and once with a wrong ``If-Match``;
        both repeats must be refused with 412. The probe is deleted afterwards.
        """
        key = f"{self.root}{_PROBE_PREFIX}{secrets.token_hex(8)}"
        outcomes: list[bool] = []
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=b"1", IfNoneMatch="*")
            for condition in ({"IfNoneMatch": "*"}, {"IfMatch": '"00000000000000000000000000000000"'}):
                try:
                    self._client.put_object(Bucket=self.bucket, Key=key, Body=b"2", **condition)
                    outcomes.append(False)
                except bex.ClientError as e:
                    _, status, _ = _client_error_fields(e)
                    if status != 412:
                        raise
                    outcomes.append(True)
        except (bex.ClientError, bex.BotoCoreError) as e:
            raise self._error(e, "checking conditional writes") from e
        finally:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key)
            except (bex.ClientError, bex.BotoCoreError):
                pass  # a leftover probe is never listed
        if not all(outcomes):
            raise StoreError(
                f"{self.location} ignores conditional writes (If-None-Match/If-Match on PUT)",
                hint="publishing would be last-writer-wins there; use a store that honours them "
                "(AWS S3, R2, MinIO, SeaweedFS, the Hub's S3 gateway)",
            )

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._made is not None:
                self._made.close()
            if self._plain is not None:
                self._plain.close()
