"""One printable form for names inside a snapshot, and the way back to the same bytes."""

from __future__ import annotations

import os

from hypothesis import given
from hypothesis import strategies as st

from cairn.core.pathnames import escape_path, unescape_path


def test_a_name_that_is_not_utf8_prints_as_a_byte_escape() -> None:
    assert escape_path(b"/d/caf\xe9") == "/d/caf\\xe9"
    assert "\\udc" not in escape_path(b"/d/caf\xe9")


def test_valid_utf8_prints_as_it_is() -> None:
    assert escape_path("/d/café".encode()) == "/d/café"


def test_a_backslash_is_doubled_so_the_characters_backslash_x_stay_apart_from_a_byte() -> None:
    assert escape_path(b"/d/caf\\xe9") == "/d/caf\\\\xe9"
    assert unescape_path(escape_path(b"/d/caf\\xe9")) == b"/d/caf\\xe9"
    assert unescape_path(escape_path(b"/d/caf\xe9")) == b"/d/caf\xe9"


def test_control_characters_are_escaped() -> None:
    assert escape_path(b"/a\nb\x7f") == "/a\\x0ab\\x7f"
    assert escape_path("/\x9b".encode()) == "/\\xc2\\x9b"
    assert unescape_path("/\\xc2\\x9b") == "/\x9b".encode()


def test_a_lone_backslash_typed_by_hand_means_itself() -> None:
    assert unescape_path("/d/a\\b") == b"/d/a\\b"


@given(st.binary(max_size=40))
def test_every_name_comes_back_byte_exact(name: bytes) -> None:
    assert unescape_path(escape_path(name)) == name
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in escape_path(name))
    assert os.fsencode(escape_path(name)) == escape_path(name).encode("utf-8")
