"""cairn key: list, add and remove the passphrases that open a repository."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.core.ids import ObjectName
from cairn.repository.errors import KeyManagementError
from cairn.repository.keyring import list_keys, make_key, remove_key, save_key


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("key", parents=[common], help="manage the repository's keys")
    keys = p.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    keys.add_parser("list", parents=[common], help="list keys").set_defaults(run=run_list)
    add = keys.add_parser("add", parents=[common], help="add a passphrase")
    add.add_argument("--new-password-file", help="read the new passphrase from this file")
    add.set_defaults(run=run_add)
    rm = keys.add_parser("remove", parents=[common], help="remove a key")
    rm.add_argument("key_id", help="ID (or unique prefix) of the key to remove")
    rm.set_defaults(run=run_remove)
    pw = keys.add_parser("passwd", parents=[common], help="change the passphrase of the key in use")
    pw.add_argument("--new-password-file", help="read the new passphrase from this file")
    pw.set_defaults(run=run_passwd)


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
    """From --new-password-file, or asked twice on the terminal."""
    file = ctx.args.new_password_file
    if file:
        try:
            with open(file, "rb") as f:
                return f.read().splitlines()[0]
        except (OSError, IndexError) as exc:
            raise UsageError(f"cannot read a passphrase from {file}") from exc
    if not sys.stdin.isatty():
        raise UsageError("give the new passphrase with --new-password-file")
    first = getpass.getpass("new passphrase: ")
    if getpass.getpass("again: ") != first:
        raise UsageError("the passphrases do not match")
    return first.encode()


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
    if len(found) != 1:
        raise KeyManagementError(f"{len(found)} keys match {prefix!r}; give a longer unique prefix")
    return found[0]
