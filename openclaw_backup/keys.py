"""Key files: the repository's master key, wrapped once per password.

A key file (``keys/<name>``, format in docs/format.md "Keys and encryption") holds the master key
sealed with a key derived from one password; several key files mean several passwords. Opening
tries each key file in turn: one damaged key file never hides a good one. The repository publishes
after adding or removing keys (:meth:`.Repository.add_key`, :meth:`.Repository.remove_keys`).
"""

from __future__ import annotations

from typing import Any

from .backends.base import Backend
from .backends.wrappers import Read, reading_ahead
from .codec import storage_id
from .crypto import Cipher, KdfParams, PlainCipher, make_key_file, open_key_file, parse_key_file
from .errors import BackupError, DamagedRepositoryError, IntegrityError, WrongPasswordError

PREFIX = "keys/"


def cipher_for(backend: Backend, encrypted: bool, plain_seed: str, password: str | None) -> Cipher:
    """The cipher that opens the repository at ``backend`` (``encrypted`` and ``plain_seed`` from its
    config): the master key from the first key file that opens with ``password``, or for an
    unencrypted repository its public seed — never when a password is configured or key files
    exist (a downgrade by a rewritten config)."""
    if encrypted:
        if not password:
            raise WrongPasswordError(
                "this repository is encrypted and no password was given",
                hint="set OPENCLAW_BACKUP_PASSWORD or pass --password-file",
            )
        return Cipher(unlock(backend, password))
    if password:
        # The user expects encryption. Either this is the wrong repository, or someone who can
        # write the store replaced the config (and perhaps deleted the keys) to make us write
        # in the clear. Never silently downgrade.
        raise IntegrityError(
            f"{backend.location} is an UNENCRYPTED repository, but a password is configured",
            hint="if you created it with --insecure-no-encryption, unset the password; "
            "otherwise its config was tampered with",
        )
    if names(backend):
        # An unencrypted repository has no key files: someone rewrote the config to make
        # us write in the clear (or read forged plaintext). Refuse.
        raise IntegrityError(
            f"{backend.location}: the config says 'unencrypted' but the repository has key files",
            hint="the config was tampered with; restore it from a copy or ask who can write the store",
        )
    try:
        return PlainCipher(bytes.fromhex(plain_seed))
    except ValueError:
        raise IntegrityError("malformed repository config: bad seed") from None


def names(backend: Backend) -> list[str]:
    return backend.list(PREFIX)


def add(backend: Backend, master: bytes, password: str, *, kdf: KdfParams | None, hostname: str, username: str) -> str:
    """Store a new key file wrapping ``master`` with ``password``; returns its name's last part."""
    key = make_key_file(master, password, params=kdf or KdfParams(), hostname=hostname, username=username)
    sid = storage_id(key)
    backend.put(f"keys/{sid}", key)
    return sid


def unlock(backend: Backend, password: str) -> bytes:
    """The master key, from the first key file that opens with ``password`` (they are read
    together: :func:`.wrappers.reading_ahead`).

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
    with reading_ahead(backend, [Read("get", name) for name in found]) as store:
        for name in found:
            try:
                master = open_key_file(store.get(name), password)
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
