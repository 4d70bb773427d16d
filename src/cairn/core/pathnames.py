"""The one printable form of a name or path inside a snapshot, and its way back to bytes.

POSIX names are bytes and need not be UTF-8 (design 3.7), but a terminal, JSON and a command line
carry text. Every command prints a path in the form `escape_path` gives and accepts it back
through `unescape_path`, so what `ls` prints can be pasted into `dump`, `restore --include` or
`ID:/sub` (docs/design.md 11.1):

- bytes that are valid UTF-8 and printable stay as they are;
- a byte that is not part of valid UTF-8 is written ``\\xNN`` (two lowercase hex digits), as
  Python's ``backslashreplace`` writes it; so is each UTF-8 byte of a control character (C0,
  DEL, C1), which would otherwise steer the terminal;
- a backslash is written ``\\\\``, so a name that holds the characters ``\\xe9`` stays apart
  from one holding the byte 0xe9.

Reading back, ``\\xNN`` is that byte and ``\\\\`` one backslash; a backslash before anything
else is kept as it is, so a path typed with a lone backslash still means what it says.
"""

from __future__ import annotations

import os
import re

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def escape_path(path: bytes) -> str:
    """`path` as printable text that `unescape_path` turns back into the same bytes."""
    out = []
    for char in os.fsdecode(path):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or 0x7F <= code <= 0x9F:  # C0, DEL, C1: they steer terminals
            out.extend(f"\\x{byte:02x}" for byte in char.encode())
        elif char == "\\":
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def unescape_path(text: str) -> bytes:
    """The bytes of a path given in the form `escape_path` prints (see the module docstring)."""
    raw = os.fsencode(text)
    return _ESCAPE.sub(_unescape_one, raw.decode("latin-1")).encode("latin-1")


def _unescape_one(match: re.Match[str]) -> str:
    found = match.group(1)
    return "\\" if found == "\\" else chr(int(found[1:], 16))
