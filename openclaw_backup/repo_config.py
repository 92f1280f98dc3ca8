"""The repository's config: the one plaintext object, written once at ``init`` and never changed.

It says what a reader needs before it can read anything else: the format version, the
repository's id (which names its local cache), whether it is encrypted, the chunker profiles and
the pack size, and — only for an unencrypted repository — the chunker's public seed. An encrypted
repository's head vouches for it (docs/format.md, "Head"): a changed config is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .chunker import DEFAULT_PROFILE, SQLITE_PROFILE, ChunkerProfile
from .errors import IntegrityError, UsageError

REPO_VERSION = 1
DEFAULT_PACK_SIZE = 16 * 1024 * 1024


@dataclass(frozen=True)
class RepoConfig:
    id: str
    encrypted: bool
    chunker: ChunkerProfile = DEFAULT_PROFILE
    chunker_sqlite: ChunkerProfile = SQLITE_PROFILE
    pack_size: int = DEFAULT_PACK_SIZE
    created: str = ""
    plain_seed: str = ""  # only for unencrypted repositories: the chunker's (public) seed

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {
            "version": REPO_VERSION,
            "id": self.id,
            "encryption": "aes-256-gcm" if self.encrypted else "none",
            "chunker": self.chunker.to_json(),
            "chunker_sqlite": self.chunker_sqlite.to_json(),
            "pack_size": self.pack_size,
            "created": self.created,
        }
        if not self.encrypted:
            doc["plain_seed"] = self.plain_seed
        return json.dumps(doc, indent=1, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RepoConfig:
        try:
            doc = json.loads(data)
            if doc["version"] != REPO_VERSION:
                raise UsageError(
                    f"repository format version {doc['version']} is not supported by this version",
                    hint="upgrade openclaw-backup",
                )
            enc = doc["encryption"]
            if enc not in ("aes-256-gcm", "none"):
                raise IntegrityError(f"unknown encryption {enc!r}")
            cfg = cls(
                id=str(doc["id"]),
                encrypted=enc != "none",
                chunker=ChunkerProfile.from_json(doc["chunker"]),
                chunker_sqlite=ChunkerProfile.from_json(doc["chunker_sqlite"]),
                pack_size=int(doc["pack_size"]),
                created=str(doc.get("created", "")),
                plain_seed=str(doc.get("plain_seed", "")),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError, OverflowError) as e:
            raise IntegrityError(f"malformed repository config: {e}") from None
        if not 1024 <= cfg.pack_size <= 1 << 30:
            raise IntegrityError("repository config has an absurd pack size")
        return cfg
