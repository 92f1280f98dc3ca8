"""Keys and sealing: the master key, password-wrapped key files, and authenticated encryption.

Words used here:

* **master key** — 64 random bytes made at ``init``: 32 for AES-256-GCM (``enc_key``) and 32 for
  keyed BLAKE3 (``id_key``: blob ids and the chunker's secret seed). It never leaves memory
  unwrapped.
* **key file** — the master key sealed with AES-256-GCM under a key derived from one password by
  Argon2id (or scrypt where Argon2id is unavailable). A repository has one key file per password;
  adding, changing or removing a password rewrites key files only, never data.
* **seal / open** — ``nonce(12) ‖ AES-256-GCM(ciphertext ‖ tag(16))`` with associated data that
  binds the object's identity (its type and, for blobs, its id), so a valid object cannot be
  passed off as another one. A :class:`PlainCipher` (explicitly unencrypted repositories) keeps the
  same interface and checks nothing; integrity then comes from content hashes alone.

Random 96-bit nonces bound one key to about 2**32 sealed objects before the collision risk
matters; at one object per 512 KiB chunk that is 2 PiB of new data per repository.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import IntegrityError, WrongPasswordError

NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = NONCE_SIZE + TAG_SIZE


@dataclass(frozen=True)
class KdfParams:
    """Password-hashing cost. ``memory_kib`` and ``iterations`` as in RFC 9106 (Argon2id).

    The default is one of OWASP's recommended Argon2id configurations (19 MiB, 2 passes, 1 lane;
    about 0.15 s here). The key is derived once per process, but a short-lived CLI pays it (in time
    and in peak memory) every run, which matters when it runs every few minutes. More lanes do not
    make it faster here (the library computes them one after another).
    """

    algorithm: str = "argon2id"
    memory_kib: int = 19456
    iterations: int = 2
    lanes: int = 1

    @classmethod
    def weak_for_tests(cls) -> KdfParams:
        """Cheap parameters for test fixtures only (cf. restic's test repositories)."""
        return cls(memory_kib=64, iterations=1, lanes=1)


def derive_key(password: bytes, salt: bytes, params: KdfParams) -> bytes:
    """Stretch ``password`` into a 32-byte wrapping key."""
    if params.algorithm == "argon2id":
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=salt,
            length=32,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=max(params.memory_kib, 8 * params.lanes),
        ).derive(password)
    if params.algorithm == "scrypt":
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        n = max(2, params.memory_kib * 1024 // (128 * 8))
        n = 1 << (n.bit_length() - 1)  # power of two
        return Scrypt(salt=salt, length=32, n=n, r=8, p=params.lanes).derive(password)
    raise IntegrityError(f"unknown key derivation {params.algorithm!r}")


class Cipher:
    """Authenticated encryption with the repository's master key (see module docstring)."""

    encrypted = True

    def __init__(self, master: bytes) -> None:
        if len(master) != 64:
            raise ValueError("master key must be 64 bytes")
        self.master = master
        self._aead = AESGCM(master[:32])
        self._id_key = master[32:]

    def blob_id(self, data: bytes | memoryview) -> bytes:
        """The keyed content id of a blob's plaintext (32 bytes)."""
        return blake3.blake3(data, key=self._id_key).digest()

    def derive(self, context: bytes, length: int = 32) -> bytes:
        """A sub-key for ``context`` (e.g. the chunker seed), independent of the others."""
        return blake3.blake3(context, key=self._id_key).digest(length=length)

    def seal(self, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, bytes(plaintext), ad)

    def sealed_size(self, plaintext_len: int) -> int:
        return NONCE_SIZE + plaintext_len + TAG_SIZE

    def seal_flagged_into(self, flag: int, body: bytes | memoryview, ad: bytes, out: memoryview) -> None:
        """Write ``seal(bytes([flag]) + body, ad)`` into ``out`` (exactly ``sealed_size(1 +
        len(body))`` bytes) with one copy of ``body``: the plaintext is laid out in place and
        encrypted where it lies."""
        n = 1 + len(body)
        nonce = os.urandom(NONCE_SIZE)
        out[:NONCE_SIZE] = nonce
        out[NONCE_SIZE] = flag
        out[NONCE_SIZE + 1 : NONCE_SIZE + n] = body
        self._aead.encrypt_into(nonce, out[NONCE_SIZE : NONCE_SIZE + n], ad, out[NONCE_SIZE:])

    def open(self, sealed: bytes | memoryview, ad: bytes, *, what: str) -> bytes:
        """Decrypt and authenticate; ``IntegrityError`` naming ``what`` on any mismatch."""
        if len(sealed) < OVERHEAD:
            raise IntegrityError(f"{what}: too short to be a sealed object")
        view = memoryview(sealed)  # the AEAD reads buffers: no copies of the input
        try:
            return self._aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], ad)
        except InvalidTag:
            raise IntegrityError(f"{what}: authentication failed (damaged, tampered or swapped)") from None


class PlainCipher(Cipher):
    """The explicit no-encryption mode: same interface, plain BLAKE3 ids, no confidentiality."""

    encrypted = False

    def __init__(self, seed: bytes) -> None:
        self.master = b""
        self._seed = seed

    def blob_id(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data).digest()

    def derive(self, context: bytes, length: int = 32) -> bytes:
        return blake3.blake3(self._seed + context).digest(length=length)

    def seal(self, plaintext: bytes | memoryview, ad: bytes) -> bytes:
        return bytes(plaintext)

    def sealed_size(self, plaintext_len: int) -> int:
        return plaintext_len

    def seal_flagged_into(self, flag: int, body: bytes | memoryview, ad: bytes, out: memoryview) -> None:
        out[0] = flag
        out[1:] = body

    def open(self, sealed: bytes | memoryview, ad: bytes, *, what: str) -> bytes:
        return bytes(sealed)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def make_key_file(master: bytes, password: str, *, params: KdfParams, hostname: str = "", username: str = "") -> bytes:
    """Wrap ``master`` under ``password``; returns the key file's JSON bytes."""
    salt = secrets.token_bytes(16)
    wrap = AESGCM(derive_key(password.encode(), salt, params))
    nonce = secrets.token_bytes(NONCE_SIZE)
    doc = {
        "version": 1,
        "kdf": {
            "algorithm": params.algorithm,
            "memory_kib": params.memory_kib,
            "iterations": params.iterations,
            "lanes": params.lanes,
            "salt": _b64(salt),
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hostname": hostname,
        "username": username,
        "nonce": _b64(nonce),
        "wrapped": _b64(wrap.encrypt(nonce, master, b"openclaw-backup key v1")),
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def parse_key_file(data: bytes) -> dict[str, Any]:
    """Parse and validate a key file's structure (not its password)."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise IntegrityError("key file of an unknown version")
        kdf = doc["kdf"]
        KdfParams(kdf["algorithm"], int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"]))
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(doc["nonce"], validate=True)
        base64.b64decode(doc["wrapped"], validate=True)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError) as e:
        raise IntegrityError(f"malformed key file: {e}") from None
    if len(salt) < 8 or len(nonce) != NONCE_SIZE:
        raise IntegrityError("malformed key file: salt or nonce of a wrong size")
    return doc


MAX_KDF_MEMORY_KIB = 4 * 1024 * 1024  # refuse a key file that asks for more than 4 GiB


def open_key_file(data: bytes, password: str) -> bytes:
    """Return the master key, or raise ``WrongPasswordError``/``IntegrityError``."""
    doc = parse_key_file(data)
    kdf = doc["kdf"]
    params = KdfParams(kdf["algorithm"], int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"]))
    if not (0 < params.memory_kib <= MAX_KDF_MEMORY_KIB and 0 < params.iterations <= 100 and 0 < params.lanes <= 64):
        raise IntegrityError("key file asks for absurd key-derivation costs; refusing")
    wrap = AESGCM(derive_key(password.encode(), base64.b64decode(kdf["salt"]), params))
    try:
        master = wrap.decrypt(
            base64.b64decode(doc["nonce"]), base64.b64decode(doc["wrapped"]), b"openclaw-backup key v1"
        )
    except InvalidTag:
        raise WrongPasswordError("wrong password") from None
    if len(master) != 64:
        raise IntegrityError("key file holds a key of the wrong size")
    return master
