"""Key files: the repository's master key, wrapped once per password.

A key file (``keys/<name>``, format in docs/format.md "Keys and encryption") holds the master key
sealed with a key derived from one password; several key files mean several passwords. Opening
tries each key file in turn: one damaged key file never hides a good one. The repository publishes
after adding or removing keys (:meth:`.Repository.add_key`, :meth:`.Repository.remove_keys`).
"""

from __future__ import annotations

from typing import Any

from .backends.base import Backend
from .codec import storage_id
from .crypto import KdfParams, make_key_file, open_key_file, parse_key_file
from .errors import BackupError, DamagedRepositoryError, IntegrityError, WrongPasswordError


def names(backend: Backend) -> list[str]:
    return backend.list("keys/")


def add(backend: Backend, master: bytes, password: str, *, kdf: KdfParams | None, hostname: str, username: str) -> str:
    """Store a new key file wrapping ``master`` with ``password``; returns its name's last part."""
    key = make_key_file(master, password, params=kdf or KdfParams(), hostname=hostname, username=username)
    sid = storage_id(key)
    backend.put(f"keys/{sid}", key)
    return sid


def unlock(backend: Backend, password: str) -> bytes:
    """The master key, from the first key file that opens with ``password``.

    ``WrongPasswordError`` when none does; the first key file's ``IntegrityError`` when every one
    is damaged.
    """
    master = None
    damaged: list[IntegrityError] = []
    found = names(backend)
    if not found:
        raise DamagedRepositoryError(
            f"{backend.location}: the repository has no key files (keys/ is empty or gone); "
            "its data cannot be decrypted without one",
            hint="put the `keys/` files back from a copy of the repository; a password alone cannot replace them",
        )
    for name in found:
        try:
            master = open_key_file(backend.get(name), password)
            break
        except WrongPasswordError:
            continue
        except IntegrityError as e:  # one damaged key file must not hide a good one
            damaged.append(e)
    if master is None and damaged and len(damaged) == len(found):
        raise damaged[0]
    if master is None:
        raise WrongPasswordError(
            "wrong password: no key of this repository opens with it"
            + (f" ({len(damaged)} damaged key file(s): {damaged[0].message})" if damaged else "")
        )
    return master


def describe(backend: Backend) -> list[dict[str, Any]]:
    """What each key file says about itself (never the key): id, creation, host, user, KDF."""
    out = []
    for name in names(backend):
        try:
            doc = parse_key_file(backend.get(name))
            out.append(
                {
                    "id": name.split("/")[-1][:12],
                    "created": doc.get("created"),
                    "hostname": doc.get("hostname"),
                    "username": doc.get("username"),
                    "kdf": doc["kdf"]["algorithm"],
                }
            )
        except BackupError as e:
            out.append({"id": name.split("/")[-1][:12], "error": e.message})
    return out


def opening_with(backend: Backend, password: str) -> list[str]:
    """Names of the key files that open with ``password``."""
    out = []
    for name in names(backend):
        try:
            open_key_file(backend.get(name), password)
            out.append(name)
        except (WrongPasswordError, IntegrityError):
            continue
    return out
