"""Which snapshots a forget policy keeps, and why.

Snapshots are grouped by host and set of root names; inside a group, newest first, each rule keeps
the newest snapshot of each of its most recent N time buckets (restic's semantics):
``keep_last`` the N newest; ``keep_hourly``/``daily``/``weekly``/``monthly``/``yearly`` one per
hour/day/ISO week/month/year; ``keep_within`` everything newer than the newest minus a duration;
``keep_tags`` every snapshot carrying one of the tags. A snapshot kept by any rule is kept; the
reasons are reported. An empty policy keeps everything (never "forget all" by accident).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .errors import UsageError
from .snapshot import Snapshot


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None
    keep_tags: tuple[str, ...] = field(default_factory=tuple)

    def empty(self) -> bool:
        return not (
            self.keep_last or self.keep_hourly or self.keep_daily or self.keep_weekly or self.keep_monthly
            or self.keep_yearly or self.keep_within or self.keep_tags
        )  # fmt: skip

    def describe(self) -> str:
        parts = [f"{k.removeprefix('keep_')}={v}" for k, v in self.__dict__.items() if v and k != "keep_tags"]
        if self.keep_tags:
            parts.append("tags=" + ",".join(self.keep_tags))
        return " ".join(parts) or "keep everything"


#: What the supervisor applies unless configured: the last 12, then 48 hourly, 14 daily, 8 weekly, 12 monthly.
DEFAULT_POLICY = Policy(keep_last=12, keep_hourly=48, keep_daily=14, keep_weekly=8, keep_monthly=12)


def parse_duration(text: str) -> timedelta:
    """``1y2m3w4d5h6min`` style (m = month = 30 days, min = minutes)."""
    units = {"y": 365, "m": 30, "w": 7, "d": 1}
    total = timedelta()
    pos = 0
    for m in re.finditer(r"(\d+)(min|y|m|w|d|h)", text):
        if m.start() != pos:
            break
        n, u = int(m.group(1)), m.group(2)
        total += (
            timedelta(minutes=n) if u == "min" else timedelta(hours=n) if u == "h" else timedelta(days=n * units[u])
        )
        pos = m.end()
    if pos != len(text) or not text:
        raise UsageError(f"bad duration {text!r}", hint="e.g. 7d, 2w, 1y6m, 12h, 30min")
    return total


def snapshot_time(snap: Snapshot) -> datetime:
    """When ``snap`` was taken (the epoch when its time is unreadable)."""
    try:
        t = datetime.fromisoformat(snap.time)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


_BUCKETS = {
    "hourly": lambda t: (t.year, t.month, t.day, t.hour),
    "daily": lambda t: (t.year, t.month, t.day),
    "weekly": lambda t: tuple(t.isocalendar()[:2]),
    "monthly": lambda t: (t.year, t.month),
    "yearly": lambda t: (t.year,),
}


def apply_policy(snapshots: list[Snapshot], policy: Policy) -> tuple[list[Snapshot], dict[str, list[str]]]:
    """Return (snapshots to forget, {kept id: reasons})."""
    if policy.empty():
        return [], {s.id: ["no policy"] for s in snapshots}
    groups: dict[tuple[str, tuple[str, ...]], list[Snapshot]] = {}
    for s in snapshots:
        groups.setdefault((s.host, tuple(sorted(s.roots))), []).append(s)
    reasons: dict[str, list[str]] = {}
    forget: list[Snapshot] = []
    for group in groups.values():
        group.sort(key=snapshot_time, reverse=True)
        newest = snapshot_time(group[0])
        kept: dict[str, list[str]] = {s.id: [] for s in group}
        for i, s in enumerate(group):
            if i < policy.keep_last:
                kept[s.id].append("last")
            if policy.keep_within is not None and snapshot_time(s) >= newest - policy.keep_within:
                kept[s.id].append("within")
            if policy.keep_tags and set(policy.keep_tags) & set(s.tags):
                kept[s.id].append("tag")
        # The last snapshot before a drastic shrink is never forgotten by a policy on its own: the
        # shrink may be a wiped or skeleton state, and that snapshot is the way back.
        shrunk_from = {s.parent for s in group if s.summary.get("shrank")}
        for s in group:
            if s.id in shrunk_from:
                kept[s.id].append("before a shrink")
        for name, key in _BUCKETS.items():
            limit = getattr(policy, f"keep_{name}")
            seen: set[tuple[int, ...]] = set()
            for s in group:
                if len(seen) >= limit:
                    break
                bucket = key(snapshot_time(s))
                if bucket not in seen:
                    seen.add(bucket)
                    kept[s.id].append(name)
        for s in group:
            if kept[s.id]:
                reasons[s.id] = kept[s.id]
            else:
                forget.append(s)
    return forget, reasons
