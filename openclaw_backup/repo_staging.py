"""Part of :class:`.repository.Repository`: staging — what a writer uploads before its publication,
and what becomes of it when the publication fails. Mixed into ``Repository``.

Words: the **attempt** is the packs a backup's index lists (set by :meth:`Staging.save_index`,
taken by :meth:`Staging.publish`). Where uploads stay staged until the next publication (a Hub
repo: an upload is no file until a commit names it), a backup refused for now — a quota's 429, a
conflict that outlasts the re-plans, a transient error, a lost answer — leaves its packs
**unpublished**: the next backup of the same process finds their blobs stored, references them
and commits them with its own packs, and the Hub, already holding their bytes, takes no upload.

**Kept packs** carry that across processes (a CLI retry, a restarted container): every pack a
backup uploads to such a store is also written to ``<cache>/<repo id>/unpublished/<pack id>``
(sealed bytes, at most :data:`KEEP_BYTES` in all, and never more than a quarter of the free
disk space). The next backup, in any process, *adopts* them
(:meth:`Staging._adopt_kept`): each is verified whole — its name is the BLAKE3 of its bytes, its
header authenticates, every blob decodes to its id — and uploaded again (the Hub answers that it
holds the object, so no byte travels; if the Hub dropped it, the kept bytes go again), so the
commit that publishes an index naming it always carries it. A kept pack is removed once an index
the head names lists it, when its publication fails in a way not worth repeating, when it is
older than :data:`KEEP_AGE`, and — loudly — when it fails verification: it is never trusted.

Other stores (a folder, S3, a bucket) make an upload visible at once, so a failed backup deletes
what it stored (no orphans for a prune to find) and nothing is kept: there a retry uploads again.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from . import codec
from .backends.base import Backend
from .crypto import Cipher
from .errors import BackupError, ConflictError, IntegrityError, QuotaError, StoreError
from .head import HeadState
from .index import Index, PackEntries
from .pack import PackWriter, pack_name, verify_pack
from .repo_config import RepoConfig

KEEP_DIR = "unpublished"
KEEP_BYTES = 1 << 30  # kept packs in all, per repository (a pack beyond is not kept: uploaded anew)
KEEP_AGE = 7 * 86400.0  # seconds a kept pack is worth adopting
PUBLISH_ATTEMPTS = 6
_PACK_ID = re.compile(r"^[0-9a-f]{64}$")
_keep_lock = threading.Lock()  # writers' upload threads keep packs side by side


class Staging:
    """Staged uploads, the publication attempt, kept packs (see the module docstring)."""

    backend: Backend
    cipher: Cipher
    config: RepoConfig
    cache_dir: Path | None
    _unpublished: PackEntries
    _attempt: PackEntries
    _warn: Callable[[str], None]

    if TYPE_CHECKING:  # what the repository provides

        def _publish(self, add_s: list[str], add_i: list[str], rm_s: set[str], rm_i: set[str], deletes: list[str],
                     *, deleted_bytes: int = 0, needs: Callable[[], None] | None = None,
                     attempts: int = PUBLISH_ATTEMPTS, merge: bool = True) -> None: ...  # fmt: skip
        def is_indexed(self, bid: bytes) -> bool: ...
        def put_immutable(self, prefix: str, data: bytes) -> str: ...
        def refresh(self, *, max_age: float = 0.0) -> HeadState: ...

    @property
    def staged_uploads(self) -> bool:
        """Uploads become visible only with the publication that names them (a Hub commit): an
        unindexed pack there is garbage, never a concurrent writer's work in progress."""
        return self.backend.capabilities.atomic_batch

    @property
    def _keep_dir(self) -> Path | None:
        """Where kept packs live; None when nothing is kept (no cache, or uploads visible at once)."""
        return self.cache_dir / KEEP_DIR if self.cache_dir is not None and self.staged_uploads else None

    def pack_writer(self, *, keep: bool = True) -> PackWriter:
        """A writer of new packs. ``keep``: a backup's writer, whose packs are kept for the next
        process if its publication is refused (see the module docstring); maintenance passes False."""
        kept = self._keep_pack if keep and self._keep_dir is not None else None
        return PackWriter(self.backend, self.cipher, pack_size=self.config.pack_size, indexed=self.is_indexed,
                          keep=kept)  # fmt: skip

    def publish(
        self,
        *,
        add_snapshots: Iterable[str] = (),
        add_indexes: Iterable[str] = (),
        remove_snapshots: Iterable[str] = (),
        remove_indexes: Iterable[str] = (),
        delete_packs: Iterable[str] = (),
        deleted_bytes: int = 0,
        needs: Callable[[], None] | None = None,
        attempts: int = PUBLISH_ATTEMPTS,
        merge: bool = True,
    ) -> None:
        """Publish a change of the head, merging with concurrent writers.

        Removed snapshots and index files, and ``delete_packs``, are deleted after (or with) the
        publication; ``deleted_bytes`` adds to the head's count of bytes deleted since the last
        squash. On a conflict the head is re-read; ``remove_*`` must still be present (else the
        change is abandoned: another process did the same maintenance) and ``needs`` is called to
        check that what we reference still exists, raising when it does not — before any attempt
        over a head other than the one the index was loaded under. With ``merge=False``
        (prune, whose plan is only valid for the head it read) a conflict is raised at once.
        """
        rm_s, rm_i = list(remove_snapshots), list(remove_indexes)
        deletes = [pack_name(p) for p in delete_packs]
        deletes += [f"snapshots/{s}" for s in rm_s] + [f"index/{i}" for i in rm_i]
        attempt, self._attempt = self._attempt, {}
        try:
            self._publish(list(add_snapshots), list(add_indexes), set(rm_s), set(rm_i), deletes,
                          deleted_bytes=deleted_bytes, needs=needs, attempts=attempts, merge=merge)  # fmt: skip
        except BaseException as e:
            # A backup refused for now (a quota, a busy repository, a lost answer) leaves its packs
            # staged for the next one (if its commit landed after all, the next load_index finds
            # them indexed and forgets them) and kept for the next process. Anything else, or any
            # other publication (a prune may have dropped them), forgets them in memory: the next
            # backup adopts what is kept (uploading it again where the Hub no longer holds it).
            retryable = isinstance(e, (QuotaError, ConflictError)) or (isinstance(e, StoreError) and e.transient)
            self._unpublished = attempt if retryable else {}
            if not retryable:
                self._drop_kept(attempt)
            raise
        self._unpublished = {}
        self._drop_kept(attempt)  # an index the head names lists them now

    def save_index(self, packs: PackEntries, *, backup: bool = False) -> str | None:
        """Write one index file listing ``packs``; its name (None, writing nothing, when empty).

        ``backup``: the index of a backup about to publish. Where uploads stay staged until the next
        publication, it also lists the unpublished packs (a failed publication's, still staged, and
        the kept packs adopted: their blobs are in the index, so this backup may reference them;
        they are committed with it), and if this publication fails too, its packs are remembered
        the same way.
        """
        if backup and self.staged_uploads:
            packs = {**{p: e for p, e in self._unpublished.items() if p not in packs}, **packs}
            self._attempt = packs
        if not packs:
            return None
        return self.put_immutable("index", codec.encode_index(self.cipher, packs))

    def discard_unpublished(self, packs: Iterable[str], objects: Iterable[str] = (), *, snapshot: str | None) -> int:
        """Remove what a failed writer stored but never published (its packs, index file and
        snapshot ``objects``), so a failure leaves no orphans; how many names were removed. Nothing
        on a store whose uploads appear only with a publication (a Hub repo: nothing is visible,
        and the packs are kept for the next attempt), and nothing when ``snapshot`` may have been
        published after all (the head is read again)."""
        names = [pack_name(p) for p in packs] + list(objects)
        if not names or self.staged_uploads:
            return 0
        try:
            if snapshot is not None and snapshot in self.refresh().snapshots:
                return 0
            self.backend.delete_unpublished(names)
        except BackupError:
            return 0  # best effort: prune removes what is left, after its grace
        return len(names)

    # ------------------------------------------------------------------ unpublished packs in the index

    def _with_unpublished(self, base: Index, *, adopt: bool) -> Index:
        """``base`` (the index files' index) plus the unpublished packs a backup may use; ``adopt``:
        a backup's, which first adopts the kept packs of earlier processes."""
        known: set[str] | None = None

        def indexed() -> set[str]:  # the packs the index files list (costs a pass over the index: lazily)
            nonlocal known
            if known is None:
                known = set(base.by_pack())
            return known

        if adopt:
            self._adopt_kept(base, indexed)
        if not self._unpublished:
            return base
        landed = indexed()
        self._unpublished = {p: e for p, e in self._unpublished.items() if p not in landed}  # landed after all
        return base.with_packs(self._unpublished)

    # ------------------------------------------------------------------ kept packs

    def _keep_pack(self, pack: str, data: memoryview) -> None:
        """Keep a copy of a pack just uploaded (a writer's upload thread); silently not when the
        kept packs would exceed :data:`KEEP_BYTES` or a quarter of the disk space that stays free,
        or the disk refuses (then a retry uploads that data anew)."""
        folder = self._keep_dir
        if folder is None:
            return
        with _keep_lock:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                used = sum(e.stat().st_size for e in os.scandir(folder) if e.is_file())
                room = min(KEEP_BYTES, (shutil.disk_usage(folder).free - len(data)) // 4)
                if used + len(data) > room:
                    return  # never more than a quarter of the disk space left free
                tmp = folder / f".tmp-{pack}"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, folder / pack)
            except OSError:
                return

    def _drop_kept(self, packs: Iterable[str]) -> None:
        folder = self._keep_dir
        if folder is None:
            return
        for pack in packs:
            try:
                (folder / pack).unlink(missing_ok=True)
            except OSError:
                pass

    def _adopt_kept(self, base: Index, indexed: Callable[[], set[str]]) -> None:
        """Adopt the kept packs of earlier attempts (see the module docstring): verified whole,
        uploaded again (the Hub takes no bytes for what it holds) and added to the unpublished set.
        Removes those already indexed, too old, or holding nothing the index lacks; a damaged one
        is removed with a warning. A failing upload raises (the backup fails; they stay kept)."""
        folder = self._keep_dir
        if folder is None:
            return
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        now = time.time()
        for entry in entries:
            pack = entry.name
            try:
                age = now - entry.stat().st_mtime
            except OSError:
                continue
            if pack.startswith(".tmp-"):
                if age > 3600:  # a copy killed half-way
                    self._drop_kept([pack])
                continue
            if pack in self._unpublished:
                continue  # ours, still staged
            if not _PACK_ID.match(pack) or age > KEEP_AGE or pack in indexed():
                self._drop_kept([pack])
                continue
            try:
                data = Path(entry.path).read_bytes()
            except OSError:
                continue  # another process committed it and removed it meanwhile
            try:
                blobs = self._verify_kept(pack, data)
            except IntegrityError as e:
                self._warn(f"a pack kept from an earlier backup ({entry.path}) is damaged ({e.message}); "
                           "removed, never used: its data is stored anew")  # fmt: skip
                self._drop_kept([pack])
                continue
            if all(base.vouches(bid) for bid, _ in blobs):
                self._drop_kept([pack])  # stored by someone else meanwhile: nothing to adopt
                continue
            self.backend.put(pack_name(pack), data)  # staged: the commit that names it carries it
            self._unpublished[pack] = blobs

    def _verify_kept(self, pack: str, data: bytes) -> list[tuple[bytes, codec.BlobRef]]:
        """A kept pack's blobs, from its own header, once every blob is verified; ``IntegrityError``
        when its bytes do not match its name, its header does not authenticate or a blob is bad."""
        refs = list(codec.parse_pack_header(self.cipher, pack, data).items())
        found = verify_pack(self.cipher, pack, data, refs)
        if not found.name_ok:
            raise IntegrityError("its content does not match its name")
        if found.bad:
            raise IntegrityError(found.bad[0][1])
        if not refs:
            raise IntegrityError("it holds no blob")
        return refs
