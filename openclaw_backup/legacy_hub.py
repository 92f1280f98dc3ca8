"""The legacy script's files at the root of a Hub repo, as a :class:`~openclaw_backup.legacy_meta.LegacyStore`.

The legacy script wrote ``latest-backup.json`` and ``backups/…`` at the root of a dataset (or model)
repo; the repository of this tool lives under its own prefix beside them. This module owns reading
those root files for :mod:`openclaw_backup.legacy` (migration and restore of legacy backups). It
never writes: it reads through :class:`~openclaw_backup.backends.hub_files.RepoFiles`, the same
bounded, error-translating calls as the repo backend.
"""

from __future__ import annotations

from .backends.hub_files import RepoFiles
from .backends.hub_tls import start_for
from .backends.options import BackendOptions, parse_hf_address
from .errors import NotFoundError, UsageError


class HfLegacyView:
    """Read-only view of a repo's root at one commit, where the legacy script's files live.

    ``get`` and ``list`` take root paths such as ``latest-backup.json`` and ``backups/…``. The
    branch is resolved once, when the view is made, so a legacy writer committing meanwhile cannot
    hand us a chain from two different states.
    """

    def __init__(self, files: RepoFiles, *, branch: str = "main") -> None:
        self._files = files
        self.location = files.location
        sha = files.call("open legacy files", lambda: files.branch_commit(branch))
        if sha is None:
            raise NotFoundError(f"{self.location}: the repository has no commit yet")
        self.revision = sha

    def get(self, name: str) -> bytes:
        """Whole content of the root path ``name``; :class:`NotFoundError` when absent."""
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/")):
            raise UsageError(f"invalid legacy path {name!r}")
        data = self._files.call(f"read {name}", lambda: self._files.read(name, self.revision))
        if data is None:
            raise NotFoundError(f"{name}: no such file in {self.location}")
        return data

    def list(self, prefix: str = "") -> list[str]:
        """Root paths starting with ``prefix`` (a plain string prefix), sorted."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else None
        paths = self._files.call("list legacy files", lambda: self._files.list(folder, self.revision))
        return sorted(p for p in paths if p.startswith(prefix))


def open_legacy_view(address: str, options: BackendOptions) -> HfLegacyView:
    """The legacy files at the root of the repo named by ``address`` (its prefix is ignored).

    Raises :class:`~openclaw_backup.errors.RepositoryNotFoundError` for a missing repo (never
    creates one) and :class:`NotFoundError` for a bucket (the legacy script only wrote repos).
    """
    parsed = parse_hf_address(address)
    if parsed.kind == "bucket":
        raise NotFoundError(f"{address}: the legacy script never wrote to buckets")
    start_for(options.hf_endpoint, options.hub_env)  # https: the TLS context is made meanwhile
    files = RepoFiles(
        options.hf_endpoint,
        parsed.repo_id,
        repo_type=parsed.kind,
        token=options.token,
        timeout=options.timeout,
        attempts=options.retries,
        env=options.hub_env,
    )
    return HfLegacyView(files)
