"""Content-defined chunking: where file contents are cut into blobs.

FastCDC (via ``pyfastcdc``) with a per-repository secret seed, so cut points reveal nothing about
contents across repositories. Two profiles: :data:`DEFAULT_PROFILE` (512 KiB / 1 MiB / 8 MiB) for
ordinary files and the finer :data:`SQLITE_PROFILE` for SQLite databases, whose changes are
scattered 4 KiB pages. Files are read sequentially (never mmapped: a file truncated while mapped
would kill the process).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

if TYPE_CHECKING:
    from pyfastcdc import FastCDC


@dataclass(frozen=True)
class ChunkerProfile:
    min_size: int
    avg_size: int
    max_size: int

    def to_json(self) -> dict[str, int]:
        return {"min": self.min_size, "avg": self.avg_size, "max": self.max_size}

    @classmethod
    def from_json(cls, doc: dict[str, int]) -> ChunkerProfile:
        p = cls(int(doc["min"]), int(doc["avg"]), int(doc["max"]))
        # pyfastcdc's own bounds, so that an accepted profile is a usable one
        if not (
            64 <= p.min_size <= 1 << 20
            and 256 <= p.avg_size <= 4 << 20
            and 1024 <= p.max_size <= 16 << 20
            and p.min_size <= p.avg_size <= p.max_size
        ):
            raise ValueError(f"chunker profile out of range: {doc}")
        return p


DEFAULT_PROFILE = ChunkerProfile(512 * 1024, 1024 * 1024, 8 * 1024 * 1024)
SQLITE_PROFILE = ChunkerProfile(8 * 1024, 16 * 1024, 64 * 1024)


class Readable(Protocol):
    """What :meth:`Chunker.cut_stream` needs of a file: ``read`` and ``readinto``."""

    def read(self, n: int = -1, /) -> bytes: ...

    def readinto(self, buf: memoryview, /) -> int: ...


class Chunker:
    """Cuts byte streams with one profile and the repository's secret ``seed`` (63 bits)."""

    def __init__(self, profile: ChunkerProfile, seed: int) -> None:
        self.profile = profile
        self._seed = seed
        self._made: FastCDC | None = None

    @property
    def _cdc(self) -> FastCDC:
        """The cutter, made on first use: every opened repository has chunkers, a restore never cuts
        (and ``pyfastcdc`` is then never imported). Two threads racing make two equal ones."""
        cdc = self._made
        if cdc is None:
            from pyfastcdc import FastCDC

            p = self.profile
            cdc = self._made = FastCDC(avg_size=p.avg_size, min_size=p.min_size, max_size=p.max_size, seed=self._seed)
        return cdc

    def cut_bytes(self, data: bytes | memoryview) -> Iterator[memoryview]:
        """Yield views into ``data``; an empty input yields nothing."""
        for c in self._cdc.cut_buf(data):
            yield c.data

    def cut_stream(self, f: BinaryIO | Readable, *, size_hint: int | None = None) -> Iterator[bytes | memoryview]:
        """Yield the chunks of a file object, in order.

        The cut points are the same as :meth:`cut_bytes` over the whole content. Files no larger
        than the maximum chunk are read in one go (the stream chunker allocates twice the maximum
        chunk size per call, which dominates the cost of small files); their chunks are views
        into that one read. ``size_hint`` (the file's size) keeps the read from reserving the
        maximum chunk size for a small file.
        """
        limit = self.profile.max_size
        want = limit + 1 if size_hint is None or not 0 <= size_hint < limit else size_hint + 1
        first = f.read(want)
        if len(first) == want and want <= limit:  # the file grew since its stat: read up to the limit
            first += f.read(limit + 1 - want)
        if len(first) <= limit:
            yield from self.cut_bytes(first)
            return
        for c in self._cdc.cut_stream(_Prefixed(first, f)):
            yield bytes(c.data)


class _Prefixed:
    """A stream of ``prefix`` followed by the rest of ``f`` (for data already read)."""

    def __init__(self, prefix: bytes, f: BinaryIO | Readable) -> None:
        self._prefix = memoryview(prefix)
        self._f = f

    def readinto(self, buf: memoryview) -> int:
        if self._prefix:
            n = min(len(buf), len(self._prefix))
            buf[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._f.readinto(buf)  # type: ignore[union-attr]
