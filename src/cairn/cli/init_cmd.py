"""cairn init: create a repository."""

from __future__ import annotations

import argparse
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.core.units import parse_size
from cairn.repository.repository import DEFAULT_PARAMS, Repository


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("init", parents=[common], help="create a new repository")
    p.add_argument("--pack-size", default="8MiB", help="target pack size (default 8MiB)")
    p.add_argument(
        "--compression",
        type=int,
        default=DEFAULT_PARAMS.compression,
        help="zstd level 0-22, 0 = off (default 3)",
    )
    p.set_defaults(run=run)


def run(ctx: Context) -> int:
    args = ctx.args
    params = DEFAULT_PARAMS.__class__(
        chunk_min=DEFAULT_PARAMS.chunk_min,
        chunk_avg=DEFAULT_PARAMS.chunk_avg,
        chunk_max=DEFAULT_PARAMS.chunk_max,
        pack_size=_pack_size(args.pack_size),
        compression=max(0, min(22, args.compression)),
    )
    passphrase = ctx.passphrase("passphrase for the new repository: ", confirm=True)
    backend = ctx.backend_factory(
        ctx.location, create=True, remote=ctx.remote_credentials(), retry_for=ctx.retry_for()
    )
    repo = Repository.init(backend, passphrase, ctx.clock, kdf=ctx.kdf(), params=params)
    ctx.output.text(f"created repository {repo.repo_id.hex()} at {backend.location()}")
    if passphrase:
        ctx.output.text("keep the passphrase safe: without it the data cannot be read")
    else:
        ctx.output.text(
            "the passphrase is empty: anyone who can read the storage can read the data"
        )
    pinned = _pinned_fingerprint(ctx)
    if pinned is not None:
        ctx.output.text(
            f"the server's certificate (SHA-256 {pinned}) is pinned: compare it with what "
            "`cairn server fingerprint` shows on the server"
        )
    ctx.output.json(
        {
            "repository_id": repo.repo_id.hex(),
            "location": backend.location(),
            "server_fingerprint": pinned,
        }
    )
    repo.close()
    return 0


def _pinned_fingerprint(ctx: Context) -> str | None:
    """The certificate fingerprint a cairns:// location is now pinned to (None elsewhere): a
    first connection pins silently, so say which certificate was trusted."""
    if not ctx.location.startswith("cairns://"):
        return None
    from cairn.backends.remote import KnownServers, parse_address  # httpx: server locations only

    remote = ctx.remote_credentials()
    pinned = KnownServers(remote.known_servers).get(parse_address(ctx.location))
    return pinned or remote.fingerprint


def _pack_size(text: str) -> int:
    try:
        size = parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--pack-size: {exc}") from exc
    return max(1024, min(size, 1 << 30))
