"""The commands that tell what this installation is and would use: ``version`` and ``config``.

``version`` names the package, the Python and the libraries that decide what it can do (the Hub
client, the SQLite bundled with APSW). ``config`` shows the effective configuration, resolved by
:class:`~..settings.Settings` exactly as a backup would resolve it, and never a secret's value.
"""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from typing import TYPE_CHECKING

from .. import __version__
from ..reporter import Reporter
from ..settings import Settings

if TYPE_CHECKING:  # the result type only: these commands open no repository
    from ._common import Result

#: The libraries ``version`` reports (distribution names).
LIBRARIES = ("huggingface_hub", "httpx2", "boto3", "apsw", "cryptography", "zstandard", "blake3", "pyfastcdc")


def _installed(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def cmd_version(args: argparse.Namespace, s: Settings, reporter: Reporter) -> Result:
    import apsw  # the SQLite that captures databases is APSW's own, not the system's

    libs = {name: _installed(name) for name in LIBRARIES}
    doc = {"version": __version__, "python": platform.python_version(), "sqlite": apsw.sqlite_lib_version(),
           "libraries": libs}  # fmt: skip
    lines = [f"openclaw-backup {__version__}", f"python          {doc['python']}",
             f"sqlite          {doc['sqlite']} (bundled with apsw)"]  # fmt: skip
    lines += [f"{name:15} {v or 'not installed'}" for name, v in libs.items()]
    return doc, "\n".join(lines), 0
