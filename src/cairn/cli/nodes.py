"""Showing tree nodes the way `ls -l` would, and as JSON."""

from __future__ import annotations

import stat
from datetime import datetime
from typing import Any

from cairn.cli.output import show_path
from cairn.format.tree import Node


def node_json(path: bytes, node: Node) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "path": show_path(path),
        "name": show_path(node.name),
        "type": node.type,
        "mode": node.mode,
        "permissions": stat.filemode(node.mode),
        "uid": node.uid,
        "gid": node.gid,
        "user": node.user,
        "group": node.group,
        "size": node.size,
        "mtime": datetime.fromtimestamp(node.mtime / 1e9).astimezone().isoformat(),
    }
    if node.type == "symlink":
        doc["target"] = show_path(node.target)
    return doc


def node_line(path: bytes, node: Node, long: bool) -> str:
    shown = show_path(path)
    if node.type == "symlink":
        shown += f" -> {show_path(node.target)}"
    if not long:
        return shown
    when = datetime.fromtimestamp(node.mtime / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    owner = f"{node.user or node.uid}/{node.group or node.gid}"
    return f"{stat.filemode(node.mode)} {owner:>15} {node.size:>12} {when} {shown}"
