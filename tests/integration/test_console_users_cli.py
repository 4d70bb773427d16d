"""`cairn server user add|list|remove` (design 18.1): the password from a file or nowhere
(CAIRN-E152 without a terminal), typed errors for bad users, and each change in the audit log."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from tests.support.clitools import Cairn


def test_console_users_from_the_command_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cairn = Cairn(data)
    cairn.run("server", "init", "--data", str(data))
    user = ("server", "user")
    no_file = cairn.run(
        *user, "add", "admin", "--role", "server-admin", "--data", str(data),
        check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert no_file.code == 152 and "CAIRN-E152" in no_file.err
    password = tmp_path / "password"
    password.write_text("a console password\n")
    add = (*user, "add", "--password-file", str(password), "--data", str(data))
    cairn.run(*add, "admin", "--role", "server-admin")
    cairn.run("server", "tenant", "add", "acme", "--data", str(data))
    cairn.run(*add, "ann", "--role", "tenant-admin", "--tenant", "acme")
    again = cairn.run(*add, "ann", "--role", "read-only", check=False)
    assert again.code == 150 and "exists already" in again.err
    no_tenant = cairn.run(*add, "bob", "--role", "tenant-admin", check=False)
    assert no_tenant.code == 150
    listed = cairn.run(*user, "list", "--data", str(data), "--json").json()
    assert listed == [
        {"name": "admin", "role": "server-admin", "tenant": None},
        {"name": "ann", "role": "tenant-admin", "tenant": "acme"},
    ]
    cairn.run(*user, "remove", "ann", "--data", str(data))
    gone = cairn.run(*user, "remove", "ann", "--data", str(data), check=False)
    assert gone.code == 151 and "CAIRN-E151" in gone.err
    assert cairn.run("server", "audit", "--data", str(data), "--json").json()["intact"]
    with sqlite3.connect(data / "server.db") as db:
        actions = [row[0] for row in db.execute("SELECT action FROM audit ORDER BY seq")]
    assert actions[-1] == "remove-user" and actions.count("add-user") == 2
    assert "a console password" not in (data / "server.db").read_bytes().decode("latin-1")
