"""Snapshots: the small document that names one backup's top tree and says when, where and what.

A snapshot is stored sealed under ``snapshots/<name>`` (docs/format.md, "Snapshots"); this module is
its typed form, and the repository does the sealing. :meth:`Snapshot.from_json` is the gate every
reader goes through: each field has its documented type (else
:class:`~openclaw_backup.errors.IntegrityError`), and an absent field takes its default.
:meth:`Snapshot.to_json` is the stored document. ``id`` is the name of the stored object, known
once it is stored or loaded; it is not part of the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import IntegrityError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(slots=True)
class Snapshot:
    """One backup. ``roots`` maps each root's name to ``{"path": source path, "type": "dir"|"file"}``;
    ``tree`` is the top tree (one node per root, named after it); ``summary`` the backup's counts."""

    tree: str
    roots: dict[str, dict[str, str]]
    time: str = ""  # ISO-8601, UTC
    host: str = ""
    username: str = ""
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    tool_version: str | None = None
    agent_version: str | None = None
    origin: str = "backup"  # or "legacy-import"
    summary: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    version: int = 1
    #: set by ``repair snapshots``: ``{"from": old id, "time", "dropped": [paths], "dropped_count"}``
    repaired: dict[str, Any] | None = None
    id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The stored document (every field but ``id``; ``repaired`` only when set)."""
        doc = {
            "version": self.version,
            "time": self.time,
            "host": self.host,
            "username": self.username,
            "tags": self.tags,
            "roots": self.roots,
            "tree": self.tree,
            "parent": self.parent,
            "tool_version": self.tool_version,
            "agent_version": self.agent_version,
            "origin": self.origin,
            "summary": self.summary,
            "warnings": self.warnings,
        }
        if self.repaired is not None:
            doc["repaired"] = self.repaired
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], *, id: str = "", what: str = "snapshot") -> Snapshot:
        """Check and type a stored document; ``IntegrityError`` naming ``what`` when malformed."""
        tree, roots, tags, summary = doc.get("tree"), doc.get("roots"), doc.get("tags", []), doc.get("summary", {})
        ok = (
            isinstance(tree, str)
            and bool(_HEX64.match(tree))
            and isinstance(roots, dict)
            and all(
                isinstance(k, str) and isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
                for k, v in roots.items()
            )
            and isinstance(tags, list)
            and all(isinstance(t, str) for t in tags)
            and isinstance(summary, dict)
            and all(isinstance(k, str) and _is_int(v) for k, v in summary.items())
            and all(isinstance(doc.get(k, ""), str) for k in ("time", "host", "username", "origin"))
            and all(isinstance(doc.get(k), str | None) for k in ("parent", "tool_version", "agent_version"))
            and all(_is_int(doc.get(k, 0)) for k in ("warnings", "version"))
            and isinstance(doc.get("repaired"), dict | None)
        )
        if not ok:
            raise IntegrityError(f"{what}: malformed snapshot document")
        return cls(
            tree=doc["tree"],
            roots=doc["roots"],
            time=doc.get("time", ""),
            host=doc.get("host", ""),
            username=doc.get("username", ""),
            tags=tags,
            parent=doc.get("parent"),
            tool_version=doc.get("tool_version"),
            agent_version=doc.get("agent_version"),
            origin=doc.get("origin", "backup"),
            summary=summary,
            warnings=doc.get("warnings", 0),
            version=doc.get("version", 1),
            repaired=doc.get("repaired"),
            id=id,
        )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def group_key(snap: Snapshot) -> str:
    """A snapshot's group: the host and the set of roots it was taken of (as restic groups them;
    retention and a backup's parent are chosen within it)."""
    return f"{snap.host}:{','.join(sorted(snap.roots))}"


def agent_snapshots(snaps: list[Snapshot], *, host: str, root: str) -> tuple[list[Snapshot], str]:
    """The snapshots that ``latest`` chooses from, oldest first, and how they were chosen.

    ``latest`` means the latest state of the agent on this machine: snapshots that hold ``root``
    (the agent's state) taken on ``host``; else those that hold ``root`` from any host (a new
    machine restoring another's state); only when no snapshot holds ``root`` at all, every snapshot.
    So a one-off backup of some other folder (``backup --source``) never becomes the agent's latest.
    """
    holding = [s for s in snaps if root in s.roots]
    here = [s for s in holding if s.host == host]
    if here:
        return here, f"the latest snapshot of {root} from {host}"
    if holding:
        return holding, f"the latest snapshot of {root} (none from {host})"
    return snaps, "the latest snapshot"


def version_key(version: str | None) -> tuple[int, ...] | None:
    """``2026.9.6`` → ``(2026, 9, 6)``; None when there is no usable version (a suffix after the
    numbers, as in ``2026.9.6-beta.1``, is ignored)."""
    m = re.match(r"v?(\d+(?:\.\d+)*)", (version or "").strip())
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def written_by_newer(snap: Snapshot, installed: str | None) -> bool:
    """The snapshot's state was last written by a newer agent than ``installed`` (OpenClaw's
    schemas only move forward: an older build refuses newer state). False when either is unknown."""
    theirs, ours = version_key(snap.agent_version), version_key(installed)
    return theirs is not None and ours is not None and theirs > ours
