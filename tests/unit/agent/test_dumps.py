"""Dump commands and staging without a server: file names, where the password goes, the staging
folder's state. Real dumps against real servers: tests/integration/test_agent_dumps.py."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest

from cairn.agent.dumps import DumpFailed, dump_command, dump_file_name, take_dumps
from cairn.agent.spec import DumpSpec

SECRET = 'pa:ss\\"word #1'


def password_file(tmp_path: Path) -> str:
    path = tmp_path / "db.pass"
    path.write_text(SECRET + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("kind", "database", "name"),
    [
        ("postgresql", "shop", "postgresql-shop.sql"),
        ("mysql", "all", "mysql-all.sql"),
        ("mysql", "my-db_1.x", "mysql-my-db_1.x.sql"),
        ("postgresql", "../etc/passwd", "postgresql-..%2Fetc%2Fpasswd.sql"),
        ("postgresql", "größe", "postgresql-gr%C3%B6%C3%9Fe.sql"),
        ("mysql", ".hidden", "mysql-.hidden.sql"),
    ],
)
def test_dump_file_name_is_one_plain_file_name(kind: str, database: str, name: str) -> None:
    assert dump_file_name(DumpSpec(kind, database)) == name


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(
        DumpFailed, match="unknown dump kind 'oracle': use one of postgresql, mysql"
    ):
        dump_file_name(DumpSpec("oracle", "x"))


def test_two_dumps_to_one_file_are_refused_before_anything_runs(tmp_path: Path) -> None:
    specs = [DumpSpec("postgresql", "shop", port=5432), DumpSpec("postgresql", "shop", port=5433)]
    with pytest.raises(DumpFailed, match=r"both write postgresql-shop\.sql"):
        take_dumps(specs, tmp_path / "staging", io.BytesIO())
    assert not (tmp_path / "staging").exists()


def test_postgresql_password_goes_into_a_private_pgpass(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    spec = DumpSpec(
        "postgresql", "-shop", host="db", port=5433, user="u", password_file=password_file(tmp_path)
    )
    command = dump_command(spec, private)
    assert command.argv == ["pg_dump", "--no-password", "--format=plain"]
    assert SECRET not in " ".join(command.argv)
    assert command.env["PGDATABASE"] == "-shop" and command.env["PGHOST"] == "db"
    assert command.env["PGPORT"] == "5433" and command.env["PGUSER"] == "u"
    assert "PGPASSWORD" not in command.env
    pgpass = Path(command.env["PGPASSFILE"])
    assert pgpass.parent == private and stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    assert pgpass.read_text() == '*:*:*:*:pa\\:ss\\\\"word #1\n'


def test_pg_dumpall_for_all(tmp_path: Path) -> None:
    command = dump_command(DumpSpec("postgresql", "all", options=("--globals-only",)), tmp_path)
    assert command.argv == ["pg_dumpall", "--no-password", "--globals-only"]
    assert "PGDATABASE" not in command.env or command.env["PGDATABASE"] != "all"


def test_mysql_password_goes_into_a_private_defaults_file(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    spec = DumpSpec(
        "mysql", "-shop", host="db", port=3307, user="u", password_file=password_file(tmp_path)
    )
    command = dump_command(spec, private)
    defaults = private / "my.cnf"
    assert command.argv[1] == f"--defaults-extra-file={defaults}"
    assert command.argv[-2:] == ["--", "-shop"]
    assert {"--single-transaction", "--routines", "--triggers"} <= set(command.argv)
    assert SECRET not in " ".join(command.argv)
    assert stat.S_IMODE(defaults.stat().st_mode) == 0o600
    assert defaults.read_text() == (
        '[client]\nuser="u"\npassword="pa:ss\\\\\\"word #1"\nhost="db"\nport=3307\n'
    )


def test_mysql_all_databases_and_socket(tmp_path: Path) -> None:
    command = dump_command(DumpSpec("mysql", "all", host="/run/mysqld/mysqld.sock"), tmp_path)
    assert command.argv[-1] == "--all-databases"
    assert 'socket="/run/mysqld/mysqld.sock"' in (tmp_path / "my.cnf").read_text()


def test_unreadable_password_file_names_the_file(tmp_path: Path) -> None:
    spec = DumpSpec("postgresql", "shop", password_file=str(tmp_path / "nope"))
    with pytest.raises(DumpFailed, match=r"cannot read password_file .*nope: No such file"):
        take_dumps([spec], tmp_path / "staging", io.BytesIO())


def test_staging_is_emptied_and_made_private(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    (staging / "sub" / "deeper").mkdir(parents=True)
    (staging / "old.sql").write_text("old")
    (staging / "link").symlink_to(tmp_path)
    staging.chmod(0o777)
    assert take_dumps([], staging, io.BytesIO()) == []
    assert list(staging.iterdir()) == []
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700
    assert tmp_path.exists(), "a symlink in staging is removed, not followed"
