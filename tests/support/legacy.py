"""Legacy repositories built the way the legacy script built them: real ``tar``, ``gzip``,
``split -b`` and ``openssl enc``, plus ``.meta.json`` / ``latest-backup.json`` as it wrote them.

Nothing here imitates the archive format in Python, except :func:`crafted_tar`, which writes the
hostile archives no honest ``tar`` would produce. Source trees are written with
:func:`tests.support.trees.write_tree` and compared with :func:`tests.support.trees.tar_fingerprint`.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from openclaw_backup.errors import NotFoundError


class DirStore:
    """A legacy repository in a local folder (what a Hub dataset clone looks like)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gets: list[str] = []

    def get(self, name: str) -> bytes:
        self.gets.append(name)
        path = self.root / name
        if ".." in name.split("/") or not path.is_file():
            raise NotFoundError(f"{name} not found")
        return path.read_bytes()

    def list(self, prefix: str) -> list[str]:
        names = (p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return sorted(n for n in names if n.startswith(prefix))


class DictStore:
    """In-memory store for property tests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files

    def get(self, name: str) -> bytes:
        try:
            return self.files[name]
        except KeyError:
            raise NotFoundError(f"{name} not found") from None

    def list(self, prefix: str) -> list[str]:
        return sorted(n for n in self.files if n.startswith(prefix))


def run(*args: str | Path, cwd: Path | None = None) -> None:
    subprocess.run([str(a) for a in args], check=True, cwd=cwd, capture_output=True)


def stamp_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y%m%d-%H%M%S").replace(tzinfo=UTC)


@dataclass
class LegacyRepo:
    """Builds a legacy repository in ``root`` from source trees, one backup per :meth:`backup`."""

    root: Path
    scratch: Path
    prefix: str = "backups"

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.store = DirStore(self.root)

    def path(self, name: str) -> Path:
        return self.root / (f"{self.prefix}/{name}" if self.prefix else name)

    def meta_path(self, archive_name: str) -> str:
        return f"{self.prefix}/{archive_name}.meta.json" if self.prefix else f"{archive_name}.meta.json"

    def backup(
        self,
        stamp: str,
        source: Path,
        *,
        members: Iterable[str] | None = None,
        backup_type: str = "full",
        chain_id: str | None = "a1b2c3d4",
        parent: str | None = None,
        password: str | None = None,
        split_size: int | None = None,
        version: str = "2.1",
        checksum: bool = True,
        naive_time: bool = False,
        set_latest: bool = True,
        tar_file: Path | None = None,
    ) -> str:
        """Make one backup of ``source`` (its top-level entries, or ``members``) and return the
        archive name. ``tar_file`` replaces the tar with a prepared one (hostile archives)."""
        name = f"openclaw-backup-{stamp}.tar.gz" + (".enc" if password is not None else "")
        out = self.path(name)
        out.parent.mkdir(parents=True, exist_ok=True)
        plain_tar = self.scratch / f"{stamp}.tar"
        if tar_file is None:
            names = sorted(members) if members is not None else sorted(p.name for p in source.iterdir())
            run("tar", "-cf", plain_tar, "-C", source, *names)
        else:
            plain_tar.write_bytes(tar_file.read_bytes())
        run("gzip", "-n", "-6", "-f", plain_tar)
        gz = plain_tar.with_name(plain_tar.name + ".gz")
        if password is not None:
            pw_file = self.scratch / "password"
            pw_file.write_text(password + "\n")  # `-pass file:` reads the first line
            run(
                "openssl", "enc", "-aes-256-cbc", "-salt", "-pbkdf2", "-in", gz, "-out", out, "-pass", f"file:{pw_file}"
            )
            gz.unlink()
        else:
            gz.rename(out)
        stored = out.read_bytes()
        volumes = [name]
        if split_size is not None:
            run("split", "-b", str(split_size), out, out.name + ".part-", cwd=out.parent)
            out.unlink()
            volumes = sorted(p.name for p in out.parent.glob(out.name + ".part-*"))
        created = stamp_time(stamp)
        created_text = created.replace(tzinfo=None).isoformat() if naive_time else created.isoformat()
        meta: dict[str, object]
        if version == "1.0":
            meta = {"version": "1.0", "created_at_utc": created_text, "file_count": 1}
            if backup_type != "full" or parent is not None:
                meta["parent"] = parent
                meta["backup_type"] = backup_type
        else:
            meta = {
                "version": version,
                "backup_type": backup_type,
                "chain_id": chain_id,
                "parent": parent,
                "volumes": volumes,
                "is_split": split_size is not None,
                "encrypted": password is not None,
                "created_at_utc": created_text,
                "last_backup_time": created_text,
                "file_count": 1,
                "archive_size": len(stored),
                "incremental_count": 0,
                "is_latest": True,
                "created_by": "openclaw-backup",
            }
            if password is not None:
                meta["encryption_algorithm"] = "AES-256-CBC"
            if checksum:
                meta["checksum"] = "sha256:" + hashlib.sha256(stored).hexdigest()
        self.path(name + ".meta.json").write_text(json.dumps(meta, indent=2))
        if set_latest:
            self.set_latest(name)
        return name

    def set_latest(self, archive_name: str) -> None:
        pointer = {
            "dataset": "someone/openclaw-state",
            "latest": self.meta_path(archive_name),
            "created_at_utc": datetime.now(UTC).isoformat(),
        }
        (self.root / "latest-backup.json").write_text(json.dumps(pointer))

    def edit_meta(self, archive_name: str, **changes: object) -> None:
        path = self.path(archive_name + ".meta.json")
        meta = json.loads(path.read_text())
        meta.update(changes)
        path.write_text(json.dumps(meta))


def crafted_tar(dest: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A tar holding exactly ``entries`` — for members no honest ``tar`` run would write."""
    with tarfile.open(dest, "w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def member(name: str, kind: bytes = tarfile.REGTYPE, *, linkname: str = "", mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.mode = mode
    info.mtime = 1_700_000_000
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info
