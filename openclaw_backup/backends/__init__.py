"""Opening a store by its address: the scheme registry, and the cross-cutting wrappers composed in one place.

Addresses: a filesystem path (local directory, also ``file://<path>``), ``memory:`` (tests),
``hf://datasets/<ns>/<name>[/<prefix>]`` (also ``hf://models/…``), ``hf://buckets/<ns>/<name>[/<prefix>]``
and ``s3://<bucket>[/<prefix>]``.

The **scheme** of an address is the text before its ``://`` (``memory:`` has the scheme ``memory``);
:data:`SCHEMES` maps each scheme to the factory that opens it, so a new kind of store is one entry
there. An address without a registered scheme is a filesystem path. The factories of remote stores
import their client on first use: ``huggingface_hub`` and ``boto3`` take a while to import and most
runs need at most one of them.

Modules of this package (dependencies point down):

* this one — the registry and the composition;
* :mod:`.wrappers` (retries, limits, logging) and the stores: :mod:`.local`, :mod:`.memory`,
  :mod:`.s3`, :mod:`.hf_repo` (Hub dataset/model repos), :mod:`.hf_bucket` (Hub buckets);
* :mod:`.hub_client` — the Hub stores' shared session, error translation and calls;
* :mod:`.options` (options and addresses) and :mod:`.base` (the contract).
"""

from __future__ import annotations

from collections.abc import Callable

from .base import Backend, Capabilities, Head
from .local import LocalBackend
from .memory import MemoryBackend
from .options import BackendOptions, parse_hf_address
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


def scheme_of(address: str) -> str:
    """The scheme of ``address`` (see the module docstring); "" for a plain path."""
    if address == "memory:":
        return "memory"
    scheme, sep, _ = address.partition("://")
    return scheme if sep else ""


def open_raw_backend(address: str, options: BackendOptions | None = None) -> Backend:
    """Return the bare backend for ``address`` (no wrappers), opened by its scheme's factory."""
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
