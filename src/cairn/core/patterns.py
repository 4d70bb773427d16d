"""Path patterns for backup excludes and restore includes/excludes (restic's filter semantics).

Patterns match absolute paths, compared as bytes (POSIX names need not be UTF-8):

- ``*`` matches any run of characters inside one path component, ``?`` one character, ``[...]``
  a character class;
- ``**`` matches any number of components, including none;
- a pattern that starts with ``/`` is anchored at the root; any other pattern may match at any
  depth (``*.log`` matches ``/a/b/c.log``; ``cache`` matches ``/x/cache``);
- a pattern that matches a folder also matches everything below it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from cairn.core.errors import CairnError


class PatternError(CairnError):
    """A pattern that cannot be used; the message says why."""


_DOUBLE_STAR = "**"


@dataclass(frozen=True, slots=True)
class Pattern:
    """One compiled pattern: a list of component matchers (None stands for ``**``)."""

    text: str
    parts: tuple[re.Pattern[str] | None, ...]

    def _match(self, comps: list[str], i: int, j: int) -> tuple[bool, bool]:
        """(matched fully, could match a descendant) for comps[i:] against parts[j:]."""
        if j == len(self.parts):
            return True, False
        if i == len(comps):
            # Ran out of path: the rest of the pattern could still match something below.
            return False, True
        part = self.parts[j]
        if part is None:
            full, below = self._match(comps, i, j + 1)
            if full:
                return True, below
            full2, below2 = self._match(comps, i + 1, j)
            return full2, below or below2 or True
        if part.fullmatch(comps[i]) is None:
            return False, False
        return self._match(comps, i + 1, j + 1)

    def matches(self, comps: list[str]) -> bool:
        """True when the pattern matches the path or one of its ancestors."""
        return self._match(comps, 0, 0)[0]

    def could_match_below(self, comps: list[str]) -> bool:
        """True when some path below `comps` might match."""
        full, below = self._match(comps, 0, 0)
        return full or below


def compile_pattern(text: str) -> Pattern:
    """Compile one pattern; raises PatternError with a reason for unusable ones."""
    if not text or not text.strip("/"):
        raise PatternError(f"empty pattern {text!r}")
    if "\0" in text:
        raise PatternError("a pattern may not contain NUL")
    anchored = text.startswith("/")
    pieces = [p for p in _latin1(text).split("/") if p]
    if not anchored and pieces[0] != _DOUBLE_STAR:
        pieces.insert(0, _DOUBLE_STAR)
    parts: list[re.Pattern[str] | None] = []
    for piece in pieces:
        if piece == _DOUBLE_STAR:
            if parts and parts[-1] is None:
                continue
            parts.append(None)
        else:
            parts.append(_component(piece, text))
    return Pattern(text, tuple(parts))


def _component(piece: str, text: str) -> re.Pattern[str]:
    if _has_unclosed_class(piece):
        raise PatternError(f"unclosed '[' in pattern {text!r}")
    try:
        return re.compile(fnmatch.translate(piece), re.DOTALL)
    except re.error as exc:
        raise PatternError(f"bad pattern {text!r}: {exc}") from exc


def _has_unclosed_class(piece: str) -> bool:
    """True when a ``[`` opens a character class that never closes (fnmatch's class syntax)."""
    i, n = 0, len(piece)
    while i < n:
        if piece[i] == "[":
            j = i + 1
            if j < n and piece[j] in "!^":
                j += 1
            if j < n and piece[j] == "]":
                j += 1
            while j < n and piece[j] != "]":
                j += 1
            if j >= n:
                return True
            i = j
        i += 1
    return False


def _latin1(text: str | bytes) -> str:
    """Bytes to str one-to-one, so byte names match byte-exactly."""
    raw = os.fsencode(text) if isinstance(text, str) else text
    return raw.decode("latin-1")


def _components(path: bytes) -> list[str]:
    return [c for c in _latin1(path).split("/") if c]


class PatternSet:
    """Several patterns; a path matches the set when it matches any of them."""

    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns

    @classmethod
    def compile(cls, texts: list[str]) -> PatternSet:
        return cls([compile_pattern(t) for t in texts])

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: bytes) -> bool:
        comps = _components(path)
        return any(p.matches(comps) for p in self.patterns)

    def could_match_below(self, path: bytes) -> bool:
        comps = _components(path)
        return any(p.could_match_below(comps) for p in self.patterns)
