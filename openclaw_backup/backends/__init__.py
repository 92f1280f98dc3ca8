"""Opening a store by its address, with the cross-cutting wrappers composed in one place.

Addresses: a filesystem path (local directory), ``memory:`` (tests), ``hf://datasets/<ns>/<name>[/<prefix>]``
(also ``hf://models/…``), ``hf://buckets/<ns>/<name>[/<prefix>]`` and ``s3://<bucket>[/<prefix>]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .base import Backend, Capabilities, Head
from .local import LocalBackend
from .memory import MemoryBackend

__all__ = ["Backend", "BackendOptions", "Capabilities", "Head", "LocalBackend", "MemoryBackend", "open_backend"]


@dataclass(frozen=True)
class BackendOptions:
    """Typed options built by the edges (CLI/settings); backends never read the environment.

    ``token``: Hub token. ``hf_endpoint``: Hub server (None = the client's default).
    ``s3_endpoint``, ``s3_region``, ``s3_access_key``, ``s3_secret_key``, ``s3_session_token``: S3 settings (None = the
    AWS defaults chain). ``timeout``: seconds bound on every single network call.
    ``create``: create the remote repo/bucket when missing. ``private``: visibility of a created repo.
    ``retries``: attempts of a transient failure before giving up.
    """

    token: str | None = None
    hf_endpoint: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_session_token: str | None = None
    timeout: float = 60.0
    create: bool = False
    private: bool = True
    retries: int = 5


def open_raw_backend(address: str, options: BackendOptions | None = None) -> Backend:
    """Return the bare backend for ``address`` (no wrappers)."""
    options = options or BackendOptions()
    if address.startswith("hf://"):
        from .hf import open_hf  # imported lazily: huggingface_hub is heavy

        return open_hf(address, options)
    if address.startswith("s3://"):
        from .s3 import open_s3

        return open_s3(address, options)
    if address == "memory:":
        return MemoryBackend()
    if address.startswith("file://"):
        address = address[len("file://") :]
    return LocalBackend(address)


def open_backend(
    address: str,
    options: BackendOptions | None = None,
    *,
    hook: Callable[[Backend], Backend] | None = None,
) -> Backend:
    """Open ``address`` with the wrappers of :mod:`.wrappers` composed around it.

    ``hook`` (tests only) wraps the bare store first, e.g. to inject faults under the retries.
    """
    from .wrappers import LimitedBackend, LoggingBackend, RetryingBackend, retry_transient

    options = options or BackendOptions()
    # Opening a remote store already talks to it (repo info, bucket check): retry that too.
    raw = retry_transient(lambda: open_raw_backend(address, options), attempts=options.retries)
    backend = hook(raw) if hook is not None else raw
    backend = LoggingBackend(LimitedBackend(backend, limit=raw.capabilities.max_connections))
    if isinstance(raw, (LocalBackend, MemoryBackend)):
        return backend  # local I/O errors are not transient: nothing to retry
    return RetryingBackend(backend, attempts=options.retries)
