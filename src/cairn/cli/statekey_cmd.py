"""`cairn server state-key set` and `cairn server restore-from` (design 17.15): the operator's
key that seals the server's state on its replication targets, and a whole server rebuilt from
a target with it. The passphrase comes from CAIRN_SERVER_STATE_PASSWORD or --password-file, as
other secrets do; this module parses and presents.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cairn.cli.context import Context, read_secret_file
from cairn.cli.errors import UsageError
from cairn.cli.serverdata import cli_actor, data_option, server_services, server_settings
from cairn.core.units import format_size
from cairn.replication.credentials import read_credentials

PASSWORD_ENV = "CAIRN_SERVER_STATE_PASSWORD"  # noqa: S105 (a variable's name)


def register(actions: Any, shared: argparse.ArgumentParser) -> None:
    """`state-key set` and `restore-from`, under `cairn server`'s actions."""
    key = actions.add_parser(
        "state-key", parents=[shared], help="the operator's key that seals the state on targets"
    )
    sub = key.add_subparsers(dest="state_key_command", metavar="ACTION", required=True)
    put = sub.add_parser(
        "set", parents=[shared], help="set (or change) the passphrase of the state key"
    )
    data_option(put)
    _password_option(put)
    put.set_defaults(run=run_set)

    restore = actions.add_parser(
        "restore-from",
        parents=[shared],
        help="rebuild a whole server from a replication target into a new data folder",
    )
    data_option(restore)
    restore.add_argument("location", help="the target's location (a folder, s3:, sftp: …)")
    restore.add_argument("--server-id", help="which server, when the location holds several")
    restore.add_argument(
        "--credentials",
        metavar="FILE",
        help="the location's own NAME=value credentials (mode 600), as `target add` takes, "
        "laid over the environment for the location only",
    )
    restore.add_argument(
        "--storage",
        metavar="LOCATION",
        help="put the tenants' objects there, as `serve --storage` (the database stays in "
        "--data; default: the data folder)",
    )
    _password_option(restore)
    restore.set_defaults(run=run_restore_from)


def _password_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-file", help=f"read the passphrase from this file (or {PASSWORD_ENV})"
    )


def passphrase(ctx: Context) -> bytes:
    """The operator's passphrase: --password-file's first line, or the environment."""
    if ctx.args.password_file:
        secret = read_secret_file(ctx.args.password_file, "state passphrase file")
    else:
        secret = os.environ.get(PASSWORD_ENV, "").encode()
    if not secret:
        raise UsageError(f"give the state passphrase: {PASSWORD_ENV} or --password-file FILE")
    return secret


def run_set(ctx: Context) -> int:
    """Draw the state key the first time; wrap it under the passphrase every time."""
    from cairn.replication.sealedstate import load_key, new_key, save_key, wrap_key

    secret = passphrase(ctx)
    services = server_services(ctx)
    data, server = services.settings.data, services.server_id
    old = load_key(data)
    key = new_key(secret, server) if old is None else wrap_key(old.key, secret, server)
    shown = "new key" if old is None else "new passphrase"
    services.admin.set_state_key(cli_actor(), lambda: save_key(data, key), shown)
    ctx.output.text(
        f"the server's state key is set ({shown}); the state goes to every target, sealed, at "
        "the next replication pass. Keep the passphrase away from this server: "
        "`cairn server restore-from` needs it"
    )
    ctx.output.json({"server_id": server, "state_key": shown})
    return 0


def run_restore_from(ctx: Context) -> int:
    from cairn.server.restorefrom import restore_from  # the server stack: only when asked

    secret = passphrase(ctx)
    settings = server_settings(ctx)
    environ: Mapping[str, str] = os.environ
    if ctx.args.credentials is not None:  # read first: a bad file fails before anything is made
        environ = {**os.environ, **read_credentials(Path(ctx.args.credentials).resolve())}
    restored = restore_from(
        settings, ctx.args.location, ctx.args.server_id, secret, cli_actor(), ctx.clock, environ
    )
    counts = restored.imported
    ctx.output.text(
        f"restored server {restored.server_id} into {settings.data}: {counts['tenants']} "
        f"tenants, {counts['tokens']} tokens, {counts['audit']} audit entries; "
        f"{restored.objects} objects ({format_size(restored.bytes)}) copied"
        + (f", {restored.present} already there" if restored.present else "")
    )
    ctx.output.text(
        "the target is not registered: to go on replicating there, run `cairn server target "
        f"add NAME {ctx.args.location} --data {settings.data}` (what is there is skipped)"
    )
    ctx.output.json(
        {
            "data": str(settings.data),
            "server_id": restored.server_id,
            "exported_ms": restored.exported_ms,
            "imported": counts,
            "tenants": restored.tenants,
            "objects": restored.objects,
            "bytes": restored.bytes,
            "present": restored.present,
            "storage": settings.storage,
        }
    )
    return 0
