#!/usr/bin/env python3
"""Deterministic generator of an OpenClaw-like agent home (``~/.openclaw``) for the benchmark.

Usage:  python bench/generate.py OUT_DIR [--scale 1.0] [--seed 1]

OUT_DIR must not exist (or be empty). Same seed and scale -> identical bytes, symlinks and
mtimes on the same machine (the SQLite file depends on the SQLite library version).
Stdlib only; no network.

Layout (sizes at --scale 1, about 190 MB; --scale 0.1 gives about 20 MB):
  openclaw.json                              config
  credentials/*.json                         small secrets (mode 0600, dir 0700)
  agents/<id>/sessions/*.jsonl               append-only chat logs        ~45 MB
  agents/<id>/sessions/sessions.json         session index
  memory/main.sqlite                         SQLite, WAL mode, chunks with 1536-float32
                                             embeddings + FTS5 table       ~55 MB
  workspace/*.md, workspace/notes/*.md       markdown notes
  media/inbound/*.jpg|*.ogg                  incompressible random bytes   ~52 MB
  cache/npm-like/<pkg>/<ver>/package/...     ~3000 small JS-like files     ~32 MB
  symlinks: workspace/LATEST.md -> notes/<x>.md, agents/main/workspace -> ../../workspace
  empty dirs: workspace/drafts, agents/coder/sessions/archive, media/outbound, logs
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import time
from array import array
from pathlib import Path

BASE_EPOCH = 1767225600  # 2026-01-01T00:00:00Z; every generated mtime is <= this
EMBED_DIM = 1536

WORDS = (  # noqa: SIM905
    "the a an to of and in is it that for on with as this be are was by at or from not but can "
    "will you we they I he she my your our their agent memory session tool file note task user "
    "assistant model context token prompt reply message search result error fix build test run "
    "deploy config backup restore repository snapshot chunk index cache node package module "
    "function class method return value string list map object array query database table row "
    "column update insert delete select schedule reminder calendar email draft summary report "
    "meeting project issue branch commit merge review change version release plan idea research "
    "paper link page browser screenshot image audio voice transcript channel telegram discord "
    "slack whatsapp gateway server client request response timeout retry limit budget cost "
    "price order invoice travel flight hotel weather today tomorrow yesterday morning evening "
    "week month year quickly carefully again already still just also only maybe probably "
    "important urgent simple complex large small new old first last next previous good better "
    "best bad worse works failed passed started finished pending done open closed because "
    "however therefore although while when where why how what which who should could would "
    "must need want like know think see look find make take give use try check add remove "
    "write read send receive show tell ask explain describe compare install configure enable "
    "disable restart stop start wait continue keep move copy rename archive compress encrypt "
    "verify compute parse format convert upload download sync share"
).split()

CODE_WORDS = (  # noqa: SIM905
    "const let var function return if else for while await async import export from require "
    "module exports this new null undefined true false typeof instanceof throw catch try class "
    "extends super static get set Promise Object Array String Number JSON Math Error Map Set "
    "options callback resolve reject value key index length result data buf err res req next "
    "path fs util stream events emit on once push pop slice splice map filter reduce forEach "
    "keys assign parse stringify toString prototype call apply bind"
).split()


# ---------------------------------------------------------------------------------------------
# text helpers (all take an explicit random.Random so mutate.py can reuse them)


def sentence(rng: random.Random, lo: int = 5, hi: int = 22) -> str:
    words = rng.choices(WORDS, k=rng.randint(lo, hi))
    s = " ".join(words)
    return s[0].upper() + s[1:] + rng.choice(".....?!")


def paragraph(rng: random.Random, lo: int = 2, hi: int = 7) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(lo, hi)))


def code_line(rng: random.Random) -> str:
    indent = "  " * rng.randint(0, 3)
    toks = rng.choices(CODE_WORDS, k=rng.randint(3, 12))
    end = rng.choice([";", ";", " {", "", ")", " }"])
    return indent + " ".join(toks) + end


def code_block(rng: random.Random, lines: int) -> str:
    return "\n".join(code_line(rng) for _ in range(lines))


def iso(ts: float) -> str:
    t = time.gmtime(int(ts))
    ms = round((ts - int(ts)) * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{ms:03d}Z"


def hexid(rng: random.Random, n: int = 8) -> str:
    return rng.randbytes(n // 2 + 1).hex()[:n]


def session_line(rng: random.Random, ts: float, parent: str | None) -> tuple[str, str]:
    """One JSONL record of a chat session: user/assistant message, tool call or tool result."""
    mid = hexid(rng, 8)
    kind = rng.random()
    if kind < 0.30:
        msg = {"role": "user", "content": [{"type": "text", "text": paragraph(rng, 1, 4)}]}
    elif kind < 0.65:
        parts = [{"type": "text", "text": "\n\n".join(paragraph(rng) for _ in range(rng.randint(1, 4)))}]
        if rng.random() < 0.3:
            parts.append({"type": "text", "text": "```js\n" + code_block(rng, rng.randint(4, 30)) + "\n```"})
        msg = {
            "role": "assistant",
            "content": parts,
            "model": rng.choice(["claude-sonnet-4", "gpt-5", "gemini-2.5-pro"]),
            "usage": {"input": rng.randint(500, 90000), "output": rng.randint(20, 4000)},
            "stopReason": "stop",
        }
    elif kind < 0.82:
        tool = rng.choice(["exec", "read", "write", "web_search", "browser", "memory_search"])
        msg = {
            "role": "assistant",
            "content": [
                {
                    "type": "toolCall",
                    "id": "call_" + hexid(rng, 16),
                    "name": tool,
                    "arguments": {
                        "command": " ".join(rng.choices(CODE_WORDS, k=rng.randint(2, 8))),
                        "path": "workspace/notes/" + hexid(rng, 6) + ".md",
                    },
                }
            ],
        }
    else:
        out = code_block(rng, rng.randint(5, 60)) if rng.random() < 0.5 else paragraph(rng, 3, 12)
        msg = {
            "role": "toolResult",
            "toolCallId": "call_" + hexid(rng, 16),
            "content": [{"type": "text", "text": out}],
            "isError": rng.random() < 0.05,
        }
    rec = {"type": "message", "id": mid, "parentId": parent, "timestamp": iso(ts), "message": msg}
    return json.dumps(rec, separators=(",", ":"), ensure_ascii=False) + "\n", mid


def session_lines(rng: random.Random, n: int, ts: float, parent: str | None = None) -> tuple[str, float, str | None]:
    out = []
    for _ in range(n):
        ts += rng.uniform(1, 90)
        line, parent = session_line(rng, ts, parent)
        out.append(line)
    return "".join(out), ts, parent


def embedding(rng: random.Random) -> bytes:
    r = rng.random
    return array("f", [(r() - 0.5) * 0.1 for _ in range(EMBED_DIM)]).tobytes()


def chunk_text(rng: random.Random) -> str:
    return paragraph(rng, 3, 10)


def note_text(rng: random.Random, title: str, paras: int) -> str:
    out = [f"# {title}\n"]
    for _i in range(paras):
        if rng.random() < 0.25:
            out.append(f"## {sentence(rng, 2, 6).rstrip('.?!')}\n")
        if rng.random() < 0.2:
            out.append("\n".join(f"- {sentence(rng, 3, 10)}" for _ in range(rng.randint(2, 6))) + "\n")
        else:
            out.append(paragraph(rng) + "\n")
    return "\n".join(out)


def sqlite_insert_chunks(db: sqlite3.Connection, rng: random.Random, n: int, ts: float) -> None:
    for _ in range(n):
        text = chunk_text(rng)
        path = rng.choice(["workspace/MEMORY.md", "workspace/notes/", "sessions/"]) + hexid(rng, 6)
        cur = db.execute(
            "INSERT INTO chunks(path, start_line, end_line, hash, model, text, embedding, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            (
                path,
                rng.randint(1, 400),
                rng.randint(401, 900),
                hexid(rng, 64),
                "text-embedding-3-small",
                text,
                embedding(rng),
                int(ts),
            ),
        )
        db.execute("INSERT INTO chunks_fts(rowid, text, path) VALUES (?,?,?)", (cur.lastrowid, text, path))


# ---------------------------------------------------------------------------------------------


class Gen:
    def __init__(self, root: Path, scale: float, seed: int):
        self.root = root
        self.scale = scale
        self.rng = random.Random(f"openclaw-bench-{seed}")
        self.mtimes: dict[Path, int] = {}

    def n(self, base: float, minimum: int) -> int:
        return max(minimum, round(base * self.scale))

    def mtime(self) -> int:
        return BASE_EPOCH - self.rng.randint(60, 30 * 86400)

    def write(self, rel: str, data: bytes | str, mtime: int | None = None) -> Path:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        p.write_bytes(data)
        self.mtimes[p] = self.mtime() if mtime is None else mtime
        return p

    def run(self) -> None:
        rng = self.rng
        self.root.mkdir(parents=True, exist_ok=True)
        self.config()
        self.credentials()
        self.sessions()
        self.memory()
        self.workspace()
        self.media()
        self.npm_cache()
        for d in ("workspace/drafts", "agents/coder/sessions/archive", "media/outbound", "logs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        # symlinks: relative, one to a note, one to a directory
        notes = sorted((self.root / "workspace/notes").iterdir())
        os.symlink("notes/" + rng.choice(notes).name, self.root / "workspace/LATEST.md")
        os.symlink("../../workspace", self.root / "agents/main/workspace")
        self.fix_mtimes()

    def config(self) -> None:
        cfg = {
            "meta": {"lastTouchedVersion": "2026.1.5"},
            "agents": {
                "defaults": {"model": {"primary": "anthropic/claude-sonnet-4"}, "workspace": "~/.openclaw/workspace"},
                "list": [{"id": a} for a in ("main", "research", "coder")],
            },
            "gateway": {"port": 18789, "bind": "loopback", "auth": {"mode": "token"}},
            "channels": {"telegram": {"enabled": True, "dmPolicy": "pairing"}},
            "memorySearch": {"provider": "openai", "model": "text-embedding-3-small"},
        }
        self.write("openclaw.json", json.dumps(cfg, indent=2) + "\n")

    def credentials(self) -> None:
        for name in ("oauth", "telegram-allowFrom", "whatsapp-creds"):
            p = self.write(
                f"credentials/{name}.json",
                json.dumps(
                    {
                        "token": self.rng.randbytes(32).hex(),
                        "refresh": self.rng.randbytes(48).hex(),
                        "expires": BASE_EPOCH + 3600,
                    },
                    indent=2,
                )
                + "\n",
            )
            p.chmod(0o600)
        (self.root / "credentials").chmod(0o700)

    def sessions(self) -> None:
        rng = self.rng
        count = self.n(60, 3)
        agents = ("main", "research", "coder")
        index: dict[str, dict] = {a: {} for a in agents}
        for i in range(count):
            agent = agents[i % 3] if i >= 3 else agents[i]
            sid = f"{hexid(rng, 8)}-{hexid(rng, 4)}-{hexid(rng, 4)}-{hexid(rng, 4)}-{hexid(rng, 12)}"
            target = int(rng.uniform(0.2, 1.8) * 750_000)
            ts = BASE_EPOCH - rng.randint(2, 60) * 86400
            chunks, size, parent = [], 0, None
            while size < target:
                text, ts, parent = session_lines(rng, 20, ts, parent)
                chunks.append(text)
                size += len(text)
            header = (
                json.dumps(
                    {
                        "type": "session",
                        "version": 3,
                        "id": sid,
                        "timestamp": iso(ts - 86400),
                        "cwd": "/root/.openclaw/workspace",
                    }
                )
                + "\n"
            )
            self.write(f"agents/{agent}/sessions/{sid}.jsonl", header + "".join(chunks), mtime=int(ts))
            index[agent][f"agent:{agent}:{i}"] = {"sessionId": sid, "updatedAt": int(ts * 1000)}
        for a in agents:
            self.write(f"agents/{a}/sessions/sessions.json", json.dumps(index[a], indent=2) + "\n")
            self.write(
                f"agents/{a}/agent/auth-profiles.json",
                json.dumps({"profiles": {"default": {"provider": "anthropic"}}}, indent=2) + "\n",
            )

    def memory(self) -> None:
        rng = self.rng
        p = self.root / "memory/main.sqlite"
        p.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(p, isolation_level=None)
        db.execute("PRAGMA page_size=4096")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE chunks(id INTEGER PRIMARY KEY, path TEXT NOT NULL, start_line INTEGER,"
            " end_line INTEGER, hash TEXT, model TEXT, text TEXT NOT NULL, embedding BLOB NOT NULL,"
            " updated_at INTEGER)"
        )
        db.execute("CREATE INDEX chunks_path ON chunks(path)")
        db.execute("CREATE VIRTUAL TABLE chunks_fts USING fts5(text, path UNINDEXED)")
        db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema', '3'), ('model', 'text-embedding-3-small')")
        rows = self.n(7000, 300)
        for start in range(0, rows, 500):
            db.execute("BEGIN")
            sqlite_insert_chunks(db, rng, min(500, rows - start), BASE_EPOCH - 86400)
            db.execute("COMMIT")
        db.close()  # last connection closes: WAL is checkpointed and -wal/-shm are removed
        self.mtimes[p] = BASE_EPOCH - 3600

    def workspace(self) -> None:
        rng = self.rng
        for name in ("AGENTS.md", "SOUL.md", "USER.md", "TOOLS.md", "MEMORY.md", "HEARTBEAT.md"):
            self.write(f"workspace/{name}", note_text(rng, name[:-3].title(), rng.randint(4, 30)))
        for i in range(self.n(60, 10)):
            self.write(
                f"workspace/notes/{i:03d}-{hexid(rng, 6)}.md",
                note_text(rng, sentence(rng, 2, 6).rstrip(".?!"), rng.randint(5, 40)),
            )

    def media(self) -> None:
        rng = self.rng
        for i in range(self.n(80, 4)):
            ext = "jpg" if i % 3 else "ogg"
            self.write(f"media/inbound/{hexid(rng, 12)}.{ext}", rng.randbytes(rng.randint(100_000, 1_200_000)))

    def npm_cache(self) -> None:
        rng = self.rng
        license_text = "MIT License\n\nCopyright (c) contributors\n\n"
        license_text += "\n".join(paragraph(rng) for _ in range(3)) + "\n"
        files = self.n(3000, 300)
        made = 0
        while made < files:
            pkg = "-".join(rng.choices(CODE_WORDS, k=rng.randint(1, 2))).lower() + "-" + hexid(rng, 3)
            ver = f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}"
            base = f"cache/npm-like/{pkg}/{ver}/package"
            self.write(
                f"{base}/package.json",
                json.dumps({"name": pkg, "version": ver, "main": "index.js", "license": "MIT"}, indent=2) + "\n",
            )
            self.write(f"{base}/LICENSE", license_text)
            made += 2
            for j in range(rng.randint(2, 10)):
                size = rng.randint(1_000, 20_000)
                lines = []
                total = 0
                while total < size:
                    ln = code_line(rng)
                    lines.append(ln)
                    total += len(ln) + 1
                name = "index.js" if j == 0 else f"lib/{rng.choice(CODE_WORDS).lower()}{j}.js"
                self.write(f"{base}/{name}", "\n".join(lines) + "\n")
                made += 1

    def fix_mtimes(self) -> None:
        for p, m in self.mtimes.items():
            os.utime(p, (m, m))
        for link in (self.root / "workspace/LATEST.md", self.root / "agents/main/workspace"):
            os.utime(link, (BASE_EPOCH - 7200, BASE_EPOCH - 7200), follow_symlinks=False)
        # directories last, deepest first, so writing children does not bump them again
        dirs = sorted((Path(d) for d, _, _ in os.walk(self.root)), key=lambda d: -len(d.parts))
        for d in dirs:
            os.utime(d, (BASE_EPOCH - 600, BASE_EPOCH - 600))


def generate(root: str | os.PathLike, scale: float = 1.0, seed: int = 1) -> Path:
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"{root} exists and is not empty")
    Gen(root, scale, seed).run()
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    generate(a.out, a.scale, a.seed)
    total = sum(f.stat().st_size for f in Path(a.out).rglob("*") if f.is_file() and not f.is_symlink())
    print(f"generated {a.out}: {total / 1e6:.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
