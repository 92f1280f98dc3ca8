"""Trees: the canonical, validated description of one directory's entries.

A tree blob is canonical JSON ``{"nodes": [node, …]}`` with nodes sorted by name, keys sorted,
no insignificant whitespace, ASCII only; so identical directories produce identical bytes and
dedupe. Names are the file system's bytes decoded with ``surrogateescape`` (a name that is not
UTF-8 round-trips through a ``\\udcXX`` escape).

Node fields: ``name``, ``type`` (``file`` | ``dir`` | ``symlink``), ``mode`` (permission bits),
``mtime_ns``; files add ``size`` and ``content`` (hex blob ids in order) and, when captured
through SQLite, ``sqlite: true``; a file that SQLite knows about may add ``sqlite_info`` (what SQLite
said: ``capture`` = ``in place`` | ``copied`` | ``raw set``, ``journal_mode``, ``page_size``,
``pages``, ``sqlite_version``; a raw set's sidecar names its database in ``sidecar_of``);
directories add ``subtree`` (hex id); symlinks add ``target``. Any node may add ``uid`` and ``gid``
(the owner, numeric) and files and directories ``xattrs`` (extended attributes: name -> base64
value); a file with more than one link may add ``hardlink`` (``"<device>:<inode>"``: nodes of one
snapshot with the same value were one file) and a file with holes ``sparse: true``.

:func:`decode_tree` is the gate every restore goes through: it refuses names that could escape a
directory (empty, ``.``, ``..``, containing ``/`` or NUL), duplicates, unknown types (devices,
fifos, sockets are never stored) and absurd sizes — whatever the repository says.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from .errors import IntegrityError, UnsafeRestoreError

NODE_TYPES = ("file", "dir", "symlink")
MAX_FILE_SIZE = 1 << 44  # 16 TiB: anything larger is a lie
MAX_NODES = 10_000_000
_HEX64 = re.compile(r"[0-9a-f]{64}")  # used with fullmatch: "$" would let a trailing newline through
_HEX_RUN = re.compile(r"[0-9a-f]*")
_HARDLINK = re.compile(r"^[0-9]{1,20}:[0-9]{1,20}$")
MAX_XATTRS = 128
MAX_XATTR_VALUE = 1 << 16  # Linux's own limit for one value


@dataclass(slots=True)
class Node:
    name: str
    type: str
    mode: int
    mtime_ns: int
    size: int = 0
    content: list[str] = field(default_factory=list)
    subtree: str | None = None
    target: str | None = None
    sqlite: bool = False
    sqlite_info: dict[str, Any] | None = None
    uid: int | None = None
    gid: int | None = None
    xattrs: dict[str, bytes] | None = None
    hardlink: str | None = None
    sparse: bool = False

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "type": self.type, "mode": self.mode, "mtime_ns": self.mtime_ns}
        if self.uid is not None:
            doc["uid"] = self.uid
        if self.gid is not None:
            doc["gid"] = self.gid
        if self.xattrs:
            doc["xattrs"] = {k: base64.b64encode(v).decode() for k, v in self.xattrs.items()}
        if self.type == "file":
            doc["size"] = self.size
            doc["content"] = self.content
            if self.sqlite:
                doc["sqlite"] = True
            if self.sqlite_info:
                doc["sqlite_info"] = self.sqlite_info
            if self.hardlink:
                doc["hardlink"] = self.hardlink
            if self.sparse:
                doc["sparse"] = True
        elif self.type == "dir":
            doc["subtree"] = self.subtree
        else:
            doc["target"] = self.target
        return doc


def encode_tree(nodes: list[Node]) -> bytes:
    nodes = sorted(nodes, key=lambda n: n.name)
    return json.dumps(
        {"nodes": [n.to_json() for n in nodes]}, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode()


def check_node_name(name: object) -> str:
    """A name that is safe to create inside a directory, else ``UnsafeRestoreError``."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\x00" in name or len(name) > 4096:
        raise UnsafeRestoreError(f"refusing entry name {name!r}: it could escape its directory")
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:
        raise UnsafeRestoreError(f"refusing entry name {name!r}: not representable as a file name") from None
    if raw in (b".", b"..") or b"/" in raw:
        raise UnsafeRestoreError(f"refusing entry name {name!r}: it could escape its directory")
    return name


def _int(doc: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = doc.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise IntegrityError(f"tree node field {key!r} is invalid: {v!r}")
    return v


def _sqlite_info(name: str, info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    simple = (str, int, bool, type(None))
    if not (
        isinstance(info, dict)
        and len(info) <= 32
        and all(isinstance(k, str) and len(k) <= 64 for k in info)
        and all(isinstance(v, simple) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                for v in info.values())
    ):  # fmt: skip
        raise IntegrityError(f"{name!r}: bad sqlite_info")
    return info


def _xattrs(name: str, raw: Any) -> dict[str, bytes] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or len(raw) > MAX_XATTRS:
        raise IntegrityError(f"{name!r}: bad xattrs")
    out: dict[str, bytes] = {}
    for k, v in raw.items():
        if not isinstance(k, str) or not k or len(k) > 255 or "\x00" in k or not isinstance(v, str):
            raise IntegrityError(f"{name!r}: bad xattr name {k!r}")
        try:
            out[k] = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise IntegrityError(f"{name!r}: bad xattr value for {k!r}") from None
        if len(out[k]) > MAX_XATTR_VALUE:
            raise IntegrityError(f"{name!r}: xattr {k!r} too large")
    return out


def _blob_ids(content: Any) -> TypeGuard[list[str]]:
    """Whether ``content`` is a list of blob ids, 64 lower-case hex digits each. Checked in C, not
    id by id in Python: a tree of large files lists thousands, and a restore decodes every tree."""
    if not isinstance(content, list):
        return False
    try:
        joined = "".join(content)  # a TypeError for anything but strings
    except TypeError:
        return False
    return (not content or set(map(len, content)) == {64}) and _HEX_RUN.fullmatch(joined) is not None


def _decode_node(doc: Any) -> Node:
    if not isinstance(doc, dict):
        raise IntegrityError("tree node is not an object")
    name = check_node_name(doc.get("name"))
    ntype = doc.get("type")
    if ntype not in NODE_TYPES:
        raise UnsafeRestoreError(f"refusing {name!r}: unsupported entry type {ntype!r}")
    node = Node(name, ntype, _int(doc, "mode", 0, 0o7777), _int(doc, "mtime_ns", -(1 << 62), 1 << 62))
    for key in ("uid", "gid"):  # checked inline first: every node of every tree has them
        if key in doc:
            v = doc[key]
            setattr(node, key, v if type(v) is int and 0 <= v <= 0xFFFFFFFF else _int(doc, key, 0, 0xFFFFFFFF))
    node.xattrs = _xattrs(name, doc.get("xattrs"))
    if ntype == "file":
        node.size = _int(doc, "size", 0, MAX_FILE_SIZE)
        content = doc.get("content")
        if not _blob_ids(content):
            raise IntegrityError(f"{name!r}: bad content list")
        node.content = content
        node.sqlite = doc.get("sqlite") is True
        node.sqlite_info = _sqlite_info(name, doc.get("sqlite_info"))
        link = doc.get("hardlink")
        if link is not None and not (isinstance(link, str) and _HARDLINK.match(link)):
            raise IntegrityError(f"{name!r}: bad hardlink key")
        node.hardlink = link
        node.sparse = doc.get("sparse") is True
    elif ntype == "dir":
        sub = doc.get("subtree")
        if not isinstance(sub, str) or not _HEX64.fullmatch(sub):
            raise IntegrityError(f"{name!r}: bad subtree id")
        node.subtree = sub
    else:
        target = doc.get("target")
        if not isinstance(target, str) or "\x00" in target or not target or len(target) > 4096:
            raise UnsafeRestoreError(f"refusing symlink {name!r}: bad target")
        try:
            os.fsencode(target)
        except UnicodeEncodeError:
            raise UnsafeRestoreError(f"refusing symlink {name!r}: target not representable") from None
        node.target = target
    return node


def decode_tree(data: bytes) -> list[Node]:
    """Parse and validate a tree blob (see the module docstring for what is refused)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError, OverflowError):
        raise IntegrityError("tree: not valid JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list) or len(doc["nodes"]) > MAX_NODES:
        raise IntegrityError("tree has no node list")
    nodes = [_decode_node(n) for n in doc["nodes"]]
    names = [os.fsencode(n.name) for n in nodes]  # compare as the bytes that land on disk
    if len(set(names)) != len(names):
        raise UnsafeRestoreError("refusing a tree with duplicate names")
    return nodes
