"""What opening a store takes: the typed options, and the parsed form of a Hub address.

This module owns the inputs of :func:`openclaw_backup.backends.open_backend` that are plain data, so
every backend module can depend on them without depending on the package that composes the
backends (and without importing a network client):

* :class:`BackendOptions` — settings built at the edge (CLI, settings); backends never read the
  environment.
* :class:`HubEnvironment` — what ``huggingface_hub``, ``httpx2`` and ``httpcore2`` would read from
  the environment for a Hub store's reads, read by the settings instead, so that those reads need
  none of these libraries.
* :class:`HfAddress` — ``hf://{datasets,models,buckets}/<ns>/<name>[/<prefix>]``. Objects live under
  ``<prefix>/`` (default :data:`DEFAULT_PREFIX`), so a repository shared with the legacy script's
  ``backups/`` and ``latest-backup.json`` is never touched outside that folder.

The S3 address (``s3://<bucket>[/<prefix>]``) is parsed by :class:`~openclaw_backup.backends.s3.S3Address`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

DEFAULT_PREFIX = "openclaw-backup"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_PART_RE = re.compile(r"^[A-Za-z0-9._-]+$")
HUB_COMMITS_PER_HOUR = 128  # the Hub's commit budget per dataset/model repo (HTTP 429 + Retry-After beyond)


@dataclass(frozen=True)
class HubEnvironment:
    """What the Hub's client libraries would read from the environment, read by the settings.

    With it (and ``BackendOptions.token`` being the token the library would send), a Hub store reads
    through :mod:`.plain_get` without importing ``huggingface_hub`` or ``httpx2``; without it
    (None in :class:`BackendOptions`), the libraries read the environment themselves, as always.

    ``token_settled``: ``BackendOptions.token`` is the token ``huggingface_hub`` would find itself
    (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``, the stored ``hf auth login`` token; None: it would send
    none) — False when only the library can tell (a refreshable OAuth login, ``HF_OIDC_RESOURCE``).
    ``offline``: ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is on: every request is refused by
    the library's request hook. ``proxied``: a proxy for http(s) is configured (``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY``, any case): httpx2 decides per URL. ``ssl_cert_file``,
    ``ssl_cert_dir``: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` (httpcore2's CA bundle).
    """

    token_settled: bool = True
    offline: bool = False
    proxied: bool = False
    ssl_cert_file: str | None = None
    ssl_cert_dir: str | None = None


@dataclass(frozen=True)
class BackendOptions:
    """Typed options built by the edges (CLI/settings); backends never read the environment.

    ``token``: Hub token. ``hf_endpoint``: Hub server (None = the client's default).
    ``s3_endpoint``, ``s3_region``, ``s3_access_key``, ``s3_secret_key``, ``s3_session_token``: S3 settings (None = the
    AWS defaults chain). ``s3_proxy``: the proxy the environment names for the S3 endpoint (None: none
    applies); botocore goes through it, and the plain reads of :mod:`.s3_plain`, which know no
    proxy, are then off. ``timeout``: seconds bound on every single network call.
    ``create``: create the remote repo/bucket when missing. ``private``: visibility of a created repo.
    ``retries``: attempts of a transient failure before giving up.
    ``hub_env``: what the Hub libraries would read from the environment (:class:`HubEnvironment`);
    None: they read it themselves.
    """

    token: str | None = None
    hf_endpoint: str | None = None
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = None
    s3_session_token: str | None = None
    s3_proxy: str | None = None
    timeout: float = 60.0
    create: bool = False
    private: bool = True
    retries: int = 5
    hub_env: HubEnvironment | None = None


@dataclass(frozen=True)
class HfAddress:
    """A parsed ``hf://`` address: ``kind`` is ``dataset``, ``model`` or ``bucket``."""

    kind: str
    repo_id: str
    prefix: str

    def __str__(self) -> str:
        return f"hf://{self.kind}s/{self.repo_id}/{self.prefix}"


def parse_hf_address(address: str) -> HfAddress:
    """Parse ``hf://{datasets,models,buckets}/<ns>/<name>[/<prefix>]``; ``UsageError`` otherwise."""
    usage = f"{address!r}: expected hf://datasets/<namespace>/<name>[/<prefix>] (or hf://models/…, hf://buckets/…)"
    if not address.startswith("hf://"):
        raise UsageError(usage)
    parts = address[len("hf://") :].strip("/").split("/")
    if len(parts) < 3 or parts[0] not in ("datasets", "models", "buckets"):
        raise UsageError(usage, hint="Spaces are rebuilt on every commit: keep backups in a dataset repo")
    kind, namespace, name, rest = parts[0][:-1], parts[1], parts[2], parts[3:]
    if not (_ID_RE.match(namespace) and _ID_RE.match(name)):
        raise UsageError(f"{address!r}: invalid namespace or name")
    if any(not _PART_RE.match(p) or p in (".", "..") for p in rest):
        raise UsageError(f"{address!r}: invalid prefix (letters, digits, '.', '_', '-' and '/')")
    return HfAddress(kind, f"{namespace}/{name}", "/".join(rest) or DEFAULT_PREFIX)
