"""What every `cairn server` admin command shares: the `--data` and global options, the data
folder's settings and services, and who acts (`cli:<unix user>`, for the audit log).

Its own module so that each group of server commands (`server_cmd`, `target_cmd`) imports it,
and none imports another.
"""

from __future__ import annotations

import argparse
import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.core.units import parse_size
from cairn.server.adminops import Actor

if TYPE_CHECKING:  # the server stack (Starlette, Prometheus, x509) loads in the handlers only
    from cairn.server.context import Services, Settings


def server_options() -> argparse.ArgumentParser:
    """The global options that apply to `cairn server` (accepted before and after the action)."""
    shared = argparse.ArgumentParser(add_help=False)
    g = shared.add_argument_group("global options")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    g.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print less"
    )
    return shared


def data_option(parser: argparse.ArgumentParser) -> None:
    """--data is accepted before or after the action; given nowhere, it stays None."""
    parser.add_argument(
        "--data", default=argparse.SUPPRESS, help="the server's data folder (or CAIRN_SERVER_DATA)"
    )


def server_settings(ctx: Context) -> Settings:
    from cairn.server.context import Settings  # every other command would pay for Starlette

    data = ctx.args.data or os.environ.get("CAIRN_SERVER_DATA")
    if not data:
        raise UsageError("give the server's data folder: --data DIR or CAIRN_SERVER_DATA")
    max_uploads = getattr(ctx.args, "max_uploads", 16)
    if max_uploads < 1:
        raise UsageError("--max-uploads must be at least 1")
    max_object = parse_quota(getattr(ctx.args, "max_object", "64M")) or 0
    if max_object < 1 << 20:
        raise UsageError("--max-object must be at least 1M (packs must fit)")
    notify = getattr(ctx.args, "notify", None)
    gc_every = getattr(ctx.args, "gc_every", None)
    if gc_every is not None and gc_every <= 0:
        raise UsageError("--gc-every must be a positive number of minutes")
    return Settings(
        data=Path(data).expanduser().resolve(),
        max_uploads=max_uploads,
        max_object_bytes=max_object,
        gc_every_s=gc_every * 60 if gc_every is not None else None,
        scrub_every_s=getattr(ctx.args, "scrub_every", 24.0) * 3600,
        gc_grace_ms=int(getattr(ctx.args, "gc_grace", 0.0) * 3600 * 1000),
        notify=Path(notify).expanduser().resolve() if notify else None,
        backup_releases_locks=bool(getattr(ctx.args, "backup_releases_locks", False)),
        storage=getattr(ctx.args, "storage", None),
    )


def server_services(ctx: Context) -> Services:
    """The services of an existing data folder: only serve and init make one (NoDataFolder)."""
    from cairn.server.app import open_services  # see server_settings

    return open_services(server_settings(ctx), create=False, clock=ctx.clock)


def cli_actor() -> Actor:
    """Who runs an admin command, for the audit log: ``cli:<unix user>``."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no name (a container): the number says who
        user = str(os.getuid())
    return Actor(f"cli:{user}", "local")


def parse_quota(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"quota {text!r}: use a size like 500M, 50G or 2T") from exc
