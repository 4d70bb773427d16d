"""cairn key: list, add and remove the passphrases that open a repository."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cairn.cli.context import Context, ask_passphrase, read_secret_file
from cairn.cli.errors import UsageError
from cairn.core.ids import ObjectName
from cairn.repository.errors import KeyManagementError
from cairn.repository.keyring import list_keys, make_key, remove_key, save_key


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("key", parents=[common], help="manage the repository's keys")
    keys = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    keys.add_parser("list", parents=[common], help="list keys").set_defaults(run=run_list)
    add = keys.add_parser("add", parents=[common], help="add a passphrase")
    _new_passphrase_options(add)
    add.set_defaults(run=run_add)
    rm = keys.add_parser("remove", parents=[common], help="remove a key")
    rm.add_argument("key_id", help="ID (or unique prefix) of the key to remove")
    rm.set_defaults(run=run_remove)
    pw = keys.add_parser("passwd", parents=[common], help="change the passphrase of the key in use")
    _new_passphrase_options(pw)
    pw.set_defaults(run=run_passwd)


def _new_passphrase_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--new-password-file", help="read the new passphrase from this file")
    p.add_argument(
        "--new-insecure-no-password",
        action="store_true",
        help="the new key's passphrase is empty (insecure; opening then needs "
        "--insecure-no-password)",
    )


def run_list(ctx: Context) -> int:
    repo = ctx.open_repository(load_index=False)
    keys = list_keys(repo.backend)
    ctx.output.table(
        ["", "ID", "User", "Host", "Created"],
        [
            ["*" if k.name == repo.key_name else "", k.name.short(), k.user, k.host, k.created]
            for k in keys
        ],
    )
    ctx.output.json(
        [
            {
                "current": k.name == repo.key_name,
                "id": k.name.hex,
                "user": k.user,
                "host": k.host,
                "created": k.created,
            }
            for k in keys
        ]
    )
    return 0


def _new_passphrase(ctx: Context) -> bytes:
    """From --new-password-file, or asked twice on the terminal; empty only with
    --new-insecure-no-password."""
    file = ctx.args.new_password_file
    if ctx.args.new_insecure_no_password:
        if file:
            raise UsageError("give --new-password-file or --new-insecure-no-password, not both")
        return b""
    if file:
        secret = read_secret_file(file, "new password file")
        source = f"the new password file {file}"
    elif not sys.stdin.isatty():
        raise UsageError("give the new passphrase with --new-password-file")
    else:
        secret, source = ask_passphrase("new passphrase: ", confirm=True), "the terminal"
    if not secret:
        raise UsageError(
            f"{source} gives an empty new passphrase. Cairn refuses an empty passphrase: give "
            "one, or pass --new-insecure-no-password (anyone who can read the repository's "
            "storage can then read its data)"
        )
    return secret


def run_add(ctx: Context) -> int:
    repo = ctx.open_repository(load_index=False)
    name = save_key(
        repo.backend,
        make_key(repo.master, repo.repo_id, _new_passphrase(ctx), ctx.kdf(), ctx.clock),
    )
    ctx.output.text(f"added key {name.short()}")
    ctx.output.json({"id": name.hex})
    return 0


def run_remove(ctx: Context) -> int:
    repo = ctx.open_repository(load_index=False)
    name = _resolve(repo.backend, ctx.args.key_id)
    remove_key(repo.backend, name, repo.key_name)
    ctx.output.text(f"removed key {name.short()}")
    ctx.output.json({"removed": name.hex})
    return 0


def run_passwd(ctx: Context) -> int:
    repo = ctx.open_repository(load_index=False)
    new = save_key(
        repo.backend,
        make_key(repo.master, repo.repo_id, _new_passphrase(ctx), ctx.kdf(), ctx.clock),
    )
    # The new key is durable before the old one goes: a crash in between leaves both working.
    remove_key(repo.backend, repo.key_name, new)
    ctx.output.text(
        f"changed the passphrase: key {repo.key_name.short()} replaced by {new.short()}"
    )
    ctx.output.json({"old": repo.key_name.hex, "new": new.hex})
    return 0


def _resolve(backend: Any, prefix: str) -> ObjectName:
    found = [k.name for k in list_keys(backend) if k.name.hex.startswith(prefix.lower())]
    if not found:
        raise KeyManagementError(f"no key of this repository has an ID starting with {prefix!r}")
    if len(found) > 1:
        shown = ", ".join(n.short() for n in found)
        raise KeyManagementError(
            f"{len(found)} keys have IDs starting with {prefix!r} ({shown}): give more of the ID"
        )
    return found[0]
