#!/usr/bin/env python3
"""The legacy script's restore of one full archive, step by step as LEGACY_FORMAT.md describes it.

Usage:  python3 bench/legacy_restore.py --endpoint URL --repo NS/NAME --token T --prefix P
            --password-file F --dest DIR

What ``python3 openclaw_backup.py restore`` does ("How the script restores"), in a process of its own
as the script runs: read ``latest-backup.json``, then the archive's ``.meta.json``; download the
archive's volumes through ``resolve`` (concatenated in order); check ``checksum`` (SHA-256 of the
stored bytes); ``openssl enc -d -aes-256-cbc -pbkdf2 | tar -xz`` into a merged folder; replace each
local folder with the merged one (here a rename, the cheapest way the script could do it).

Its best case is modelled wherever the script's own code is unknown: the standard library's HTTP client
(no ``huggingface_hub`` import), one full archive (no chain of incrementals), and a rename instead of a
copy. Only the standard library is used, so the process costs what a plain ``python3`` start costs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import urllib.request
from pathlib import Path

# the bench's servers are on loopback: never through a proxy
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def extract(archive: Path, password_file: Path, into: Path) -> bool:
    """``openssl enc -d -aes-256-cbc -pbkdf2 | tar -xz`` of ``archive`` into ``into``; False when either fails."""
    dec = subprocess.Popen(
        ["openssl", "enc", "-d", "-aes-256-cbc", "-pbkdf2", "-pass", f"file:{password_file}", "-in", str(archive)],
        stdout=subprocess.PIPE,
    )
    assert dec.stdout is not None
    rc_tar = subprocess.run(["tar", "-xzf", "-", "-C", str(into)], stdin=dec.stdout).returncode
    dec.stdout.close()
    return dec.wait() == 0 and rc_tar == 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--endpoint", "--repo", "--token", "--prefix", "--password-file", "--dest"):
        p.add_argument(name, required=True)
    args = p.parse_args()
    headers = {"Authorization": f"Bearer {args.token}"}

    def get(path: str) -> bytes:
        url = f"{args.endpoint}/datasets/{args.repo}/resolve/main/{path}"
        with _OPENER.open(urllib.request.Request(url, headers=headers), timeout=600) as r:
            return bytes(r.read())

    latest = json.loads(get("latest-backup.json"))
    meta = json.loads(get(latest["latest"]))
    dest = Path(args.dest)
    merged = dest.with_name(f".{dest.name}.legacy-merge")
    merged.mkdir(parents=True)
    archive = merged.with_name(merged.name + ".tar.gz.enc")
    with open(archive, "wb") as out:
        h = hashlib.sha256()
        for volume in meta["volumes"]:
            data = get(f"{args.prefix}/{volume}")
            h.update(data)
            out.write(data)
    if meta.get("checksum") and meta["checksum"] != f"sha256:{h.hexdigest()}":
        raise SystemExit(f"checksum mismatch on {meta['volumes']}")
    if not extract(archive, Path(args.password_file), merged):
        raise SystemExit("legacy restore failed (openssl or tar)")
    archive.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    for part in sorted(os.listdir(merged)):  # openclaw-state/, root-*/ …: each replaces its local folder
        os.rename(merged / part, dest / part)
    merged.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
