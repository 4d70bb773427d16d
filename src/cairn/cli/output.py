"""Printing results: human text on stdout, or one JSON document with --json."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO


def show_path(path: bytes) -> str:
    """A path for humans and JSON: bytes that are not UTF-8 are shown as backslash escapes."""
    return os.fsdecode(path).encode("utf-8", "backslashreplace").decode("utf-8")


class Output:
    """Where a command writes its results."""

    def __init__(self, json_mode: bool, quiet: bool = False, out: TextIO = sys.stdout) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._out = out

    def text(self, line: str = "") -> None:
        """A line for humans; nothing in JSON mode."""
        if not self.json_mode and not self.quiet:
            self._out.write(line + "\n")

    def json(self, document: Any) -> None:
        """The command's JSON result; nothing in human mode."""
        if self.json_mode:
            self._out.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")

    def json_line(self, document: Any) -> None:
        """One JSON document per line, for streaming commands (ls, find)."""
        self.json(document)

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        if self.json_mode or self.quiet:
            return
        widths = [
            max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
            for i, h in enumerate(headers)
        ]
        self.text("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        self.text("-" * (sum(widths) + 2 * (len(widths) - 1)))
        for row in rows:
            self.text("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
