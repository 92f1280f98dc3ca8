"""Damage records and absence: what the repository can no longer vouch for.

A **damage record** (``damaged/<name>``, docs/format.md "Damage records") is a sealed document that
``check`` writes when it finds blobs missing (their pack is gone) or damaged (authentication failed):
it names their **places**, ``(blob id, pack id)`` pairs; an empty blob id names the pack itself
(its bytes do not match its name). The repository reads every record when it loads the index and
does not vouch for a place any record names (:meth:`.Index.build`), so writers store those blobs
again. Records only take trust away: one that cannot be read is ignored with a warning.

Absence is damage only when confirmed: a listing may lag behind the store, so each pack a listing
lacks is asked for by name (:func:`confirm_missing`) before it is called missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from . import codec
from .backends.base import Backend
from .backends.wrappers import Read, reading_ahead
from .codec import storage_id
from .crypto import Cipher
from .errors import IntegrityError, NotFoundError
from .pack import pack_name

PREFIX = "damaged/"
_KIND = b"damaged"

Places = set[tuple[bytes, str]]


def read_records(
    backend: Backend, cipher: Cipher, *, warn: Callable[[str, str], None], names: Iterable[str] | None = None
) -> dict[str, Places]:
    """Every damage record (those of ``names`` when given, else the store's listing): name -> the
    places it names. ``warn(key, message)`` for one that cannot be read (it is left out). The
    records are read together (:func:`.wrappers.reading_ahead`)."""
    out: dict[str, Places] = {}
    names = backend.list(PREFIX) if names is None else list(names)
    with reading_ahead(backend, [Read("get", name) for name in names]) as store:  # one round trip
        for name in names:
            try:
                doc = codec.decode_document(cipher, _KIND, store.get(name), what=name[:25])
                out[name] = {(bytes.fromhex(b), str(p)) for b, p in doc["blobs"]}
            except NotFoundError:
                continue  # consumed by a repair meanwhile
            except (IntegrityError, KeyError, TypeError, ValueError) as e:
                warn(name, f"{name[:25]}: unreadable damage record ({getattr(e, 'message', e)}); ignored")
    return out


def write_record(backend: Backend, cipher: Cipher, places: Iterable[tuple[bytes, str]], *, found_by: str) -> str | None:
    """Store a damage record naming ``places``; its name (None, writing nothing, when empty)."""
    blobs = sorted({(b.hex(), p) for b, p in places})
    if not blobs:
        return None
    doc = {"version": 1, "time": datetime.now(UTC).isoformat(timespec="seconds"), "found_by": found_by,
           "blobs": [list(x) for x in blobs]}  # fmt: skip
    data = codec.encode_document(cipher, _KIND, doc)
    name = f"{PREFIX}{storage_id(data)}"
    backend.put(name, data)
    return name


def confirm_missing(backend: Backend, packs: Iterable[str]) -> set[str]:
    """Those of ``packs`` the store really lacks, asked one by one (only absence is damage)."""
    gone = set()
    for pack in packs:
        try:
            backend.size(pack_name(pack))
        except NotFoundError:
            gone.add(pack)
    return gone
