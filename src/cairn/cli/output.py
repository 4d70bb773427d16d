"""Printing results: human text on stdout, or one JSON document with --json.

A command hands over its JSON result once; it is written when the command ends (`finish`), so a
command that combines steps (forget --prune, check --repair) makes one document of them, and an
error that follows a result (check finding damage, snapshots meeting one it cannot open) joins
it: ``{"result": ..., "error": {...}}``. A failure with no result is ``{"error": {...}}``. So
stdout always holds exactly one JSON document.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from cairn.core.pathnames import escape_path


def show_path(path: bytes) -> str:
    """A path for humans and JSON, in the one escaped form every command accepts back
    (cairn.core.pathnames: bytes that are not UTF-8 as ``\\xNN``)."""
    return escape_path(path)


_NOTHING = object()


class Output:
    """Where a command writes its results."""

    def __init__(self, json_mode: bool, quiet: bool = False, out: TextIO = sys.stdout) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._out = out
        self._result: Any = _NOTHING

    def text(self, line: str = "") -> None:
        """A line for humans; nothing in JSON mode."""
        if not self.json_mode and not self.quiet:
            self._out.write(line + "\n")

    def json(self, document: Any) -> None:
        """The command's JSON result, written by `finish`; nothing in human mode. Only one: a
        command that combines steps combines their results."""
        if self._result is not _NOTHING:
            raise RuntimeError("a command has one JSON result; combine its steps' results")
        self._result = document

    def finish(self, error: dict[str, Any] | None = None) -> None:
        """Write the one JSON document: the result, the error, or both."""
        if not self.json_mode:
            return
        if error is None:
            document = None if self._result is _NOTHING else self._result
        elif self._result is _NOTHING:
            document = {"error": error}
        else:
            document = {"result": self._result, "error": error}
        self._result = _NOTHING
        if document is not None:
            self._out.write(json.dumps(document, ensure_ascii=False, default=str) + "\n")

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
