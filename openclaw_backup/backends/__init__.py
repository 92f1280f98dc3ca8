"""Opening a store by its address: the scheme registry, and the cross-cutting wrappers composed in one place.

Addresses: a filesystem path (local directory, also ``file://<path>``), ``memory:`` (tests),
``hf://datasets/<ns>/<name>[/<prefix>]`` (also ``hf://models/…``), ``hf://buckets/<ns>/<name>[/<prefix>]``
and ``s3://<bucket>[/<prefix>]``.

The **scheme** of an address is the text before its ``://``, case-insensitive (``memory:`` has the
scheme ``memory``); :data:`SCHEMES` maps each scheme to the factory that opens it, so a new kind of
store is one entry there. An address without ``://`` is a filesystem path — unless it starts with a
known scheme and one slash too few (``hf:/datasets/…``, ``s3:bucket``): that is a typo, refused. An
address with an unknown scheme (``ftp://``, ``gs://``) is refused too: taken as a path it would
quietly create ``./ftp:`` on a disk that may vanish. The factories of remote stores
import their client on first use: ``huggingface_hub`` and ``botocore`` take a while to import and most
runs need at most one of them.

Modules of this package (dependencies point down):

* this one — the registry and the composition;
* :mod:`.wrappers` (retries, limits, logging) and the stores: :mod:`.local`, :mod:`.memory`,
  :mod:`.s3`, :mod:`.hf_repo` (Hub dataset/model repos), :mod:`.hf_bucket` (Hub buckets);
* :mod:`.hub_files` — a Hub repo's files read by path (plain GETs, :mod:`.plain_get`);
* :mod:`.hub_client` — the Hub stores' shared session (the library's), error translation and calls;
* :mod:`.hub_bounds` — the bounds of every Hub call (timeouts, retries), without the library;
* :mod:`.hub_tls` — the TLS context of the Hub's https connections, made early;
* :mod:`.options` (options and addresses) and :mod:`.base` (the contract).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import UsageError
from .base import Backend, Capabilities, Head
from .local import LocalBackend
from .memory import MemoryBackend
from .options import HUB_COMMITS_PER_HOUR, BackendOptions, parse_hf_address
from .wrappers import LimitedBackend, LoggingBackend, RetryingBackend, retry_transient

__all__ = [
    "SCHEMES",
    "Backend",
    "BackendOptions",
    "Capabilities",
    "Factory",
    "Head",
    "LocalBackend",
    "MemoryBackend",
    "normalize_address",
    "open_backend",
    "open_hf",
    "open_raw_backend",
    "scheme_of",
]

#: Opens one address with the options; raises a :class:`~openclaw_backup.errors.BackupError`.
Factory = Callable[[str, BackendOptions], Backend]


def _open_local(address: str, options: BackendOptions) -> Backend:
    return LocalBackend(address.removeprefix("file://"))


def _open_memory(address: str, options: BackendOptions) -> Backend:
    return MemoryBackend()


def open_hf(address: str, options: BackendOptions) -> Backend:
    """Open an ``hf://`` address: a bucket (``hf://buckets/…``) or a dataset/model repo.

    A missing repo or bucket raises :class:`~openclaw_backup.errors.RepositoryNotFoundError`, or is
    created private when ``options.create`` (visibility from ``options.private``).
    """
    parsed = parse_hf_address(address)
    from .hub_tls import start_for

    start_for(options.hf_endpoint, options.hub_env)  # https: the CA bundle loads while the modules that follow import
    if parsed.kind == "bucket":
        from .hf_bucket import open_hf_bucket

        return open_hf_bucket(parsed, options)
    from .hf_repo import open_hf_repo

    return open_hf_repo(parsed, options)


def _open_s3(address: str, options: BackendOptions) -> Backend:
    from .s3 import open_s3

    return open_s3(address, options)


#: Scheme → factory. Addresses with an unregistered scheme are filesystem paths (``_open_local``).
SCHEMES: dict[str, Factory] = {
    "file": _open_local,
    "memory": _open_memory,
    "hf": open_hf,
    "s3": _open_s3,
}


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_NEAR_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):/?(?!/)")


def scheme_of(address: str) -> str:
    """The scheme of ``address`` in lower case (see the module docstring); "" for a plain path.
    Raises :class:`~openclaw_backup.errors.UsageError` for an unknown scheme or a mistyped one."""
    if address.lower() == "memory:":
        return "memory"
    known = ", ".join(f"{s}://" for s in SCHEMES if s != "memory")
    m = _URL.match(address)
    if m:
        scheme = m.group(1).lower()
        if scheme not in SCHEMES:
            raise UsageError(f"unknown repository scheme {m.group(1)!r} in {address!r}",
                             hint=f"use a path, or one of {known}")  # fmt: skip
        return scheme
    near = _NEAR_URL.match(address)
    if near and near.group(1).lower() in SCHEMES and near.group(1).lower() != "memory":
        fixed = near.group(1).lower() + "://" + address[near.end() :]
        raise UsageError(f"repository address {address!r} has a mistyped scheme", hint=f"did you mean {fixed!r}?")
    return ""


def normalize_address(address: str) -> str:
    """``address`` with its scheme in lower case (``HF://datasets/a/b`` → ``hf://datasets/a/b``)."""
    scheme = scheme_of(address)
    if scheme and scheme != "memory":
        return scheme + address[len(scheme) :]
    return address


def open_raw_backend(address: str, options: BackendOptions | None = None) -> Backend:
    """Return the bare backend for ``address`` (no wrappers), opened by its scheme's factory."""
    address = normalize_address(address)
    factory = SCHEMES.get(scheme_of(address), _open_local)
    return factory(address, options or BackendOptions())


def open_backend(
    address: str,
    options: BackendOptions | None = None,
    *,
    hook: Callable[[Backend], Backend] | None = None,
) -> Backend:
    """Open ``address`` with the wrappers of :mod:`.wrappers` composed around it.

    ``hook`` (tests only) wraps the bare store first, e.g. to inject faults under the retries.
    Retries are added when the store declares ``capabilities.transient_failures``.
    """
    options = options or BackendOptions()
    # Opening a remote store already talks to it (repo info, bucket check): retry that too.
    raw = retry_transient(lambda: open_raw_backend(address, options), attempts=options.retries)
    backend = hook(raw) if hook is not None else raw
    backend = LoggingBackend(LimitedBackend(backend, limit=raw.capabilities.max_connections))
    if not raw.capabilities.transient_failures:
        return backend  # e.g. local I/O errors: a retry would not cure them
    return RetryingBackend(backend, attempts=options.retries)


def commit_budget(address: str) -> int | None:
    """Commits an hour the store at ``address`` allows a repository (a Hub dataset/model repo:
    :data:`~.options.HUB_COMMITS_PER_HOUR`), None when it counts none (local, S3, buckets)."""
    address = normalize_address(address)
    if scheme_of(address) == "hf" and not address[len("hf://") :].startswith("buckets/"):
        return HUB_COMMITS_PER_HOUR
    return None
