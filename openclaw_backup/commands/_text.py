"""Text for people: times in the local zone, the ``stats`` and ``status`` reports.

The JSON documents keep their raw keys and UTC times; these functions only decide what a terminal
shows. Sizes always go through :func:`._common.human_size` (one set of units: B, KiB, MiB, GiB, TiB).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any


def local_time(iso: str | None) -> str:
    """An ISO time (any zone) as ``2026-12-03 12:17:47 CET`` in this machine's zone, to the second."""
    if not iso:
        return "-"
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    local = t.astimezone() if t.tzinfo else t
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def stats_text(doc: dict[str, Any], size: Any) -> str:
    """``stats`` for people; ``size`` formats bytes."""
    ratio = doc.get("dedup_ratio")
    stored, unique = int(doc.get("stored_bytes", 0)), int(doc.get("unique_raw_bytes", 0))
    rows = [
        ("Snapshots", f"{doc.get('snapshots', 0):,}"),
        ("Data in the snapshots", size(doc.get("snapshots_logical_bytes", 0)) + "  (all snapshots, counted in full)"),
        ("Unique data", size(unique) + (f"  (the snapshots hold {ratio}x this: deduplication)" if ratio else "")),
        ("Stored", size(stored) + (f"  ({stored / unique:.0%} of the unique data, compressed"
                                   + (" and encrypted)" if doc.get("encrypted") else ")") if unique else "")),
        ("Packs", f"{doc.get('packs', 0):,} holding {doc.get('blobs', 0):,} blobs "
                  f"({doc.get('data_blobs', 0):,} of file data)"),
        ("Index files", f"{doc.get('index_files', 0):,}"),
        ("Encrypted", "yes" if doc.get("encrypted") else "NO"),
    ]  # fmt: skip
    return "\n".join(f"{k + ':':24} {v}" for k, v in rows)


def _alive(pid: Any) -> bool | None:
    """Whether process ``pid`` runs here (None when that cannot be told)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return None
    return True


def status_text(doc: dict[str, Any], healthy: bool) -> tuple[str, bool]:
    """``status`` for people, and whether the supervisor still runs (False: it stopped or died)."""
    state = str(doc.get("state", "unknown"))
    running = state != "stopped" and _alive(doc.get("pid")) is not False
    lines = []
    if state == "stopped":
        lines.append(f"Supervisor:     stopped at {local_time(doc.get('stopped'))} "
                     f"(exit status {doc.get('exit_code')}); nothing is being backed up now")  # fmt: skip
    elif not running:
        lines.append(f"Supervisor:     NOT RUNNING (process {doc.get('pid')} is gone; it was {state}); "
                     "nothing is being backed up now")  # fmt: skip
    else:
        lines.append(f"Supervisor:     {state} (process {doc.get('pid')}, since {local_time(doc.get('started'))})")
        if doc.get("child_pid"):
            lines.append(f"Agent:          process {doc['child_pid']}")
    lines.append(f"Health:         {'healthy' if healthy else 'UNHEALTHY'}")
    if doc.get("problem"):
        lines.append(f"Problem:        {doc['problem']}")
    result = f" — {doc['last_result']}" if doc.get("last_result") else ""
    lines.append(f"Last success:   {local_time(doc.get('last_success'))}{result}")
    if doc.get("last_error"):
        when, _, message = str(doc["last_error"]).partition(" ")
        lines.append(f"Last error:     {local_time(when)} — {message}")
    if running and doc.get("next_run"):
        lines.append(f"Next backup:    {local_time(doc.get('next_run'))} (or sooner after a burst of changes)")
    lines.append(f"Backups:        {doc.get('backups_ok', 0)} succeeded, {doc.get('backups_failed', 0)} failed")
    return "\n".join(lines), running
