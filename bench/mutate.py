#!/usr/bin/env python3
"""Apply one "few minutes of agent activity" mutation to a tree made by generate.py.

Usage:  python bench/mutate.py ROOT [--step 1] [--seed 1]

What one step does (contents are deterministic given seed, step and the tree's state):
  * appends 5-40 JSONL lines to 2-3 session logs (append-only, like the gateway does);
  * memory/main.sqlite: inserts 50 chunks (text + 1536-float32 embedding + FTS row) and deletes
    20 existing ones, through sqlite3, in WAL mode, then closes the connection. Closing the last
    connection checkpoints the WAL into the main file and removes main.sqlite-wal/-shm, as an app
    that opens the DB per task would; so the main file changes in place (scattered pages) and no
    -wal file is left for the backup to see;
  * adds 2 new media files (random bytes) and deletes 1 existing one;
  * edits one note: replaces a paragraph in its middle.
mtimes are NOT forced: the files get the real current time, as with a live agent (this is what the
legacy mtime-based incremental relies on).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate as g


def mutate(root: str | Path, step: int = 1, seed: int = 1) -> dict:
    root = Path(root)
    rng = g.random.Random(f"openclaw-mutate-{seed}-{step}")
    report: dict = {"step": step}

    # 1. session logs: append
    logs = sorted(root.glob("agents/*/sessions/*.jsonl"))
    chosen = rng.sample(logs, k=min(len(logs), rng.randint(2, 3)))
    appended = 0
    for p in chosen:
        # continue the chain; parentId linkage is cosmetic, keep it cheap
        text, _, _ = g.session_lines(rng, rng.randint(5, 40), g.BASE_EPOCH + step * 300, None)
        with open(p, "a", encoding="utf-8") as f:
            f.write(text)
        appended += len(text.encode())
    report["sessions_appended_bytes"] = appended
    report["sessions_touched"] = [str(p.relative_to(root)) for p in chosen]

    # 2. SQLite: 50 inserts, 20 deletes, WAL mode kept, checkpoint on close
    db = sqlite3.connect(root / "memory/main.sqlite", isolation_level=None)
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    db.execute("BEGIN")
    g.sqlite_insert_chunks(db, rng, 50, g.BASE_EPOCH + step * 300)
    db.execute("COMMIT")
    ids = [r[0] for r in db.execute("SELECT id FROM chunks ORDER BY id")]
    victims = rng.sample(ids, k=min(20, len(ids)))
    db.execute("BEGIN")
    for i in victims:
        db.execute("DELETE FROM chunks WHERE id=?", (i,))
        db.execute("DELETE FROM chunks_fts WHERE rowid=?", (i,))
    db.execute("COMMIT")
    db.close()
    report["sqlite"] = {"journal_mode": mode, "inserted": 50, "deleted": len(victims), "checkpointed_on_close": True}

    # 3. media: +2, -1
    media = root / "media/inbound"
    existing = sorted(media.iterdir())
    new = []
    for k in range(2):
        p = media / f"step{step:04d}-{k}-{g.hexid(rng, 8)}.{rng.choice(['jpg', 'ogg'])}"
        p.write_bytes(rng.randbytes(rng.randint(100_000, 1_200_000)))
        new.append(p.name)
    gone = rng.choice(existing)
    gone.unlink()
    report["media_added"] = new
    report["media_deleted"] = gone.name

    # 4. one note: replace a paragraph in the middle
    notes = sorted((root / "workspace/notes").glob("*.md"))
    note = rng.choice(notes)
    paras = note.read_text(encoding="utf-8").split("\n\n")
    mid = len(paras) // 2
    paras[mid] = g.paragraph(rng)
    note.write_text("\n\n".join(paras), encoding="utf-8")
    report["note_edited"] = str(note.relative_to(root))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root")
    ap.add_argument("--step", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    import json

    print(json.dumps(mutate(a.root, a.step, a.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
