"""open_backend: which backend a location string names."""

from __future__ import annotations

from pathlib import Path

import pytest

from cairn.backends.errors import BackendError
from cairn.backends.local import LocalBackend
from cairn.backends.location import open_backend
from cairn.backends.memory import MemoryBackend
from cairn.backends.remote import parse_address


def test_memory_gives_a_fresh_memory_backend() -> None:
    first, second = open_backend("memory:"), open_backend("memory:")
    assert isinstance(first, MemoryBackend)
    assert first is not second
    assert first.location() == "memory:"


@pytest.mark.parametrize("prefix", ["", "local:"])
def test_paths_give_a_local_backend(tmp_path: Path, prefix: str) -> None:
    backend = open_backend(f"{prefix}{tmp_path / 'repo'}")
    assert isinstance(backend, LocalBackend)
    assert backend.location() == str(tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_create_makes_the_local_layout(tmp_path: Path) -> None:
    open_backend(str(tmp_path / "repo"), create=True)
    assert (tmp_path / "repo" / "packs" / "ff").is_dir()


@pytest.mark.parametrize("location", ["swift:container/path", "rest:http://x"])
def test_unknown_schemes_are_refused(location: str) -> None:
    with pytest.raises(BackendError, match="supported: local paths, cairns://"):
        open_backend(location)


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("cairn://example.com/t", "loopback only"),
        ("cairns://host", "cairns://HOST:PORT/TENANT"),
        ("cairns://host:1/a/b", "one tenant name"),
        ("cairns://host:1/a/b/c/d", "one tenant name"),
        ("cairns://host:1/a/../c", "one tenant name"),
        ("cairns://host:1/a/B/c", "one tenant name"),
        ("cairns://host:99999/t", "bad port"),
        ("cairns://127.0.0.1:8443/t", "needs a token"),
        ("s3:bucket/path", r"s3:https://HOST\[:PORT\]/BUCKET"),
        ("s3:http://example.com/bucket", "loopback only"),
        ("s3:https://example.com", "no bucket"),
        ("s3:https://key:secret@example.com/bucket", "never in the location"),
        ("s3:https://example.com/bucket/a/../b", "'..'"),
        ("s3:https://example.com:99999/bucket", "bad port"),
    ],
)
def test_server_locations_are_checked_before_any_connection(location: str, reason: str) -> None:
    with pytest.raises(BackendError, match=reason):
        open_backend(location)


def test_an_empty_location_is_refused() -> None:
    with pytest.raises(BackendError):
        open_backend("")


def test_a_copy_in_an_area_is_a_server_location() -> None:
    """Design 17.14: `cairns://HOST:PORT/AREA/<server-id>/<tenant-id>` names a copy another
    server replicated into the area; its requests go to the copy's routes."""
    copy = parse_address(f"cairns://host:1/site-a/{'a' * 32}/{'b' * 32}")
    assert (copy.tenant, copy.copy) == ("site-a", f"{'a' * 32}/{'b' * 32}")
    assert copy.prefix == f"/v1/t/site-a/c/{'a' * 32}/{'b' * 32}"
    assert str(copy) == f"cairns://host:1/site-a/{'a' * 32}/{'b' * 32}"
    assert parse_address("cairns://host:1/site-a").prefix == "/v1/t/site-a"


def test_a_server_location_takes_its_token_from_the_environment_it_is_given() -> None:
    """A server opening a Cairn-server target passes no credentials: the environment's."""
    environ = {"CAIRN_TOKEN": "cairn_" + "1" * 12 + "_" + "2" * 64}
    backend = open_backend("cairns://127.0.0.1:1/site-a/x/y", environ=environ)
    assert backend.location() == "cairns://127.0.0.1:1/site-a/x/y"
    backend.close()
    with pytest.raises(BackendError, match="needs a token"):
        open_backend("cairns://127.0.0.1:1/site-a", environ={})
