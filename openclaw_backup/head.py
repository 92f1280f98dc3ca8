"""The head document: the sequence number and the live snapshots and index files (docs/format.md,
"Head"). The repository seals, publishes and reads it; this is its typed form and its gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .errors import IntegrityError


@dataclass
class HeadState:
    """What the head says: the sequence number and the live snapshots and index files."""

    seq: int = 0
    snapshots: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    deleted_since_squash: int = 0  # bytes deleted on a store that frees them only when history is squashed

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "seq": self.seq,
            "snapshots": self.snapshots,
            "indexes": self.indexes,
            "deleted_since_squash": self.deleted_since_squash,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HeadState:
        try:
            st = cls(
                int(doc["seq"]),
                [str(s) for s in doc["snapshots"]],
                [str(i) for i in doc["indexes"]],
                int(doc.get("deleted_since_squash", 0)),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise IntegrityError(f"malformed head: {e}") from None
        for name in st.snapshots + st.indexes:
            if len(name) != 64 or not all(c in "0123456789abcdef" for c in name):
                raise IntegrityError("head names an invalid object")
        return st
