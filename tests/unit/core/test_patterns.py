"""Path patterns: restic's semantics, byte-exact names, and clear errors."""

from __future__ import annotations

import glob
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.core.patterns import PatternError, PatternSet


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.log", b"/a/b/c.log", True),
        ("*.log", b"/a/b/c.log/inside", True),
        ("*.log", b"/a/b/c.txt", False),
        ("cache", b"/x/cache/y", True),
        ("cache", b"/x/caches", False),
        ("/x", b"/y/x", False),
        ("/home/*/docs", b"/home/u/docs/z", True),
        ("/a/**/z", b"/a/z", True),
        ("/a/**/z", b"/a/b/c/z", True),
        ("/a/**/z", b"/a/b", False),
        ("/a/b?", b"/a/bc", True),
        ("/a/[bc]", b"/a/c", True),
        ("caf\udce9", b"/caf\xe9", True),
    ],
)
def test_matching(pattern: str, path: bytes, expected: bool) -> None:
    assert PatternSet.compile([pattern]).matches(path) is expected


def test_could_match_below_guides_restore_includes() -> None:
    include = PatternSet.compile(["/home/u/docs/a"])
    assert include.could_match_below(b"/home")
    assert include.could_match_below(b"/home/u/docs")
    assert not include.could_match_below(b"/etc")
    assert PatternSet.compile(["*.txt"]).could_match_below(b"/anything")


@pytest.mark.parametrize("bad", ["", "/", "[abc", "a\0b"])
def test_bad_patterns_raise_pattern_error(bad: str) -> None:
    with pytest.raises(PatternError):
        PatternSet.compile([bad])


names = st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(st.lists(names, min_size=1, max_size=5))
def test_an_escaped_literal_matches_itself_and_what_is_below(comps: list[bytes]) -> None:
    path = b"/" + b"/".join(comps)
    pattern = os.fsdecode(b"/" + b"/".join(glob.escape(c) for c in comps))
    patterns = PatternSet.compile([pattern])
    assert patterns.matches(path)
    assert patterns.matches(path + b"/below")
    assert not patterns.matches(path + b"x")
