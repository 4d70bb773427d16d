"""cairn server user: the console's users (design 18.1). Adding and removing are audited admin
operations (`AdminOps.add_user`, `remove_user`), recorded as ``cli:<unix user>``. The password
comes from --password-file's first line, or is asked for twice on the terminal; with neither,
the command stops (CAIRN-E152) rather than make a user no one can sign in as."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from cairn.cli.context import Context, read_secret_file
from cairn.cli.serverdata import cli_actor, data_option, server_services
from cairn.server.users import ConsoleRole, ConsoleUser, NoPassword


def register(actions: Any, shared: argparse.ArgumentParser) -> None:
    """`cairn server user ACTION`, under `cairn server`'s actions."""
    user = actions.add_parser("user", parents=[shared], help="manage the console's users")
    sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = sub.add_parser("add", parents=[shared], help="add a console user")
    data_option(add)
    add.add_argument("name", metavar="NAME", help="the user name (a-z, 0-9, . _ -)")
    add.add_argument(
        "--role", required=True, choices=[r.value for r in ConsoleRole], help="what they may see"
    )
    add.add_argument("--tenant", help="a tenant-admin's tenant")
    add.add_argument("--password-file", help="read the password from this file's first line")
    add.set_defaults(run=run_add)
    ls = sub.add_parser("list", parents=[shared], help="list the console's users")
    data_option(ls)
    ls.set_defaults(run=run_list)
    remove = sub.add_parser("remove", parents=[shared], help="remove a user (signs them out)")
    data_option(remove)
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(run=run_remove)


def run_add(ctx: Context) -> int:
    args = ctx.args
    password = _password(args.password_file)
    wanted = ConsoleUser(args.name, ConsoleRole(args.role), args.tenant)
    made = server_services(ctx).admin.add_user(cli_actor(), wanted, password)
    ctx.output.text(f"console user {made.name} added ({made.role.value})")
    ctx.output.json({"name": made.name, "role": made.role.value, "tenant": made.tenant})
    return 0


def run_list(ctx: Context) -> int:
    from cairn.web.dashboard import show_time  # the server stack: only when a command needs it

    users = server_services(ctx).admin.users.list()
    rows = [[u.name, u.role.value, u.tenant or "-", show_time(u.created_ms)] for u in users]
    ctx.output.table(["name", "role", "tenant", "added"], rows)
    ctx.output.json([{"name": u.name, "role": u.role.value, "tenant": u.tenant} for u in users])
    return 0


def run_remove(ctx: Context) -> int:
    server_services(ctx).admin.remove_user(cli_actor(), ctx.args.name)
    ctx.output.text(f"console user {ctx.args.name} removed")
    ctx.output.json({"removed": ctx.args.name})
    return 0


def _password(file: str | None) -> str:
    if file is not None:
        try:
            return read_secret_file(file, "password file").decode()
        except UnicodeDecodeError as exc:
            raise NoPassword(f"the password file {file} is not UTF-8 text") from exc
    if not sys.stdin.isatty():
        raise NoPassword("give the password with --password-file FILE (no terminal to ask on)")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise NoPassword("the two passwords differ; nothing was added")
    return first
