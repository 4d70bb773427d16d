"""Database dumps against real servers: a dump taken by take_dumps, backed up and restored with
the real `cairn` CLI, loads into a fresh database with every row equal; and the ways a dump
fails (wrong password, no such database, server down, a lock past the timeout, no tool)."""

# ruff: noqa: S608 (the tests build their own SQL from fixed test values)

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cairn.agent.dumps import DumpFailed, take_dumps
from cairn.agent.spec import DumpSpec
from tests.support.agentfixtures import (
    MariadbServer,
    PostgresServer,
    in_ci,
    mariadb_fixture,  # noqa: F401 (the `mariadb` fixture)
    postgres_fixture,  # noqa: F401 (the `postgres` fixture)
    servers_missing,
)
from tests.support.clitools import Cairn
from tests.support.serverfixture import free_port

pytestmark = pytest.mark.required("PostgreSQL and MariaDB servers")

UNICODE = 'Grüße, 日本語, emoji 🎉, O\'Brien \\ "quoted" \t tab'
SMALL_BLOB = bytes(range(256)) * 4
BIG_BLOB = random.Random(7).randbytes(3 * 1024 * 1024)
BIG_TEXT = "ünïcode line\n" * 80_000


def test_database_servers_are_installed_in_ci() -> None:
    """CI must not shrink the suite by skipping the database tests."""
    if not in_ci():
        pytest.skip("enforced only in CI (CI=true)")
    assert servers_missing() == []


def backup_and_restore(staging: Path, tmp_path: Path) -> Path:
    """Back the staging folder up with the real CLI, restore it elsewhere; returns the copy."""
    cairn = Cairn(tmp_path / "repo", cache=tmp_path / "cache")
    cairn.run("init")
    summary = cairn.run("backup", str(staging), "--json").json()
    assert summary["errors"] == []
    cairn.run("restore", "latest", "--target", str(tmp_path / "restored"))
    return tmp_path / "restored" / staging.relative_to("/")


def staging_folder(tmp_path: Path) -> Path:
    """A staging folder left over from an earlier run: too open, with stale files in it."""
    staging = tmp_path / "state" / "dumps" / "job"
    (staging / "old-subfolder").mkdir(parents=True)
    (staging / "postgresql-stale.sql").write_text("stale")
    (staging / ".mysql-x.sql.partial").write_text("half")
    staging.chmod(0o755)
    return staging


# PostgreSQL


def pg_fill(server: PostgresServer, database: str) -> None:
    server.psql(f'CREATE DATABASE "{database}"')
    server.psql(
        """
        CREATE TABLE items (id integer PRIMARY KEY, name text NOT NULL, data bytea,
                            price numeric(12, 2), seen timestamptz);
        CREATE TABLE notes (id serial PRIMARY KEY, item integer REFERENCES items, body text);
        INSERT INTO items SELECT g, 'item ' || g, decode(md5(g::text), 'hex'), g * 1.25,
               '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour'
          FROM generate_series(1, 500) g;
        INSERT INTO notes (item, body)
          SELECT g % 500 + 1, repeat('n', g) FROM generate_series(1, 300) g;
        CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM items';
        """,
        database,
    )
    tricky = (
        f"INSERT INTO items VALUES (1001, {pg_text(UNICODE)}, '\\x{SMALL_BLOB.hex()}', NULL, NULL);"
        f"INSERT INTO items VALUES (1002, {pg_text(BIG_TEXT)}, '\\x{BIG_BLOB.hex()}', 0, now());"
    )
    server.psql(tricky, database)


def pg_text(value: str) -> str:
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\t", "\\t") + "'"


def pg_rows(server: PostgresServer, database: str) -> dict[str, bytes]:
    tables = ("items", "notes")
    return {
        t: server.psql(f"COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT", database) for t in tables
    }


def pg_spec(server: PostgresServer, tmp_path: Path, database: str, **kw: object) -> DumpSpec:
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password_file": str(server.password_file(tmp_path)),
    }
    options.update(kw)
    return DumpSpec("postgresql", database, **options)  # type: ignore[arg-type]


def pg_restore_into(server: PostgresServer, dump: Path) -> None:
    server.psql('CREATE DATABASE "shop-restored"')
    server.load(dump, "shop-restored")


def pg_check_restored(server: PostgresServer, original: dict[str, bytes]) -> None:
    assert original["items"].count(b"\n") == 502 and original["notes"].count(b"\n") == 300
    name = server.psql(
        "SELECT encode(convert_to(name, 'UTF8'), 'hex') FROM items WHERE id = 1001", "shop-restored"
    )
    assert bytes.fromhex(name.decode().strip()) == UNICODE.encode()
    blob = server.psql("SELECT encode(data, 'hex') FROM items WHERE id = 1002", "shop-restored")
    assert bytes.fromhex(blob.decode().strip()) == BIG_BLOB
    assert server.psql("SELECT item_count()", "shop-restored") == b"502\n"


def test_pg_dumpall_dumps_every_database(postgres: PostgresServer, tmp_path: Path) -> None:
    postgres.psql('CREATE DATABASE "every"')
    postgres.psql("CREATE TABLE marker (v text); INSERT INTO marker VALUES ('in every')", "every")
    staging = tmp_path / "staging"
    written = take_dumps([pg_spec(postgres, tmp_path, "all")], staging, io.BytesIO())
    assert written == [staging / "postgresql-all.sql"]
    text = written[0].read_text()
    assert "CREATE DATABASE every" in text and "in every" in text
    assert "CREATE ROLE postgres" in text


def test_postgresql_wrong_password_fails_with_what_to_do(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    staging = tmp_path / "staging"
    with pytest.raises(DumpFailed) as failed:
        take_dumps(
            [pg_spec(postgres, tmp_path, "postgres", password_file=str(wrong))],
            staging,
            io.BytesIO(),
        )
    message = str(failed.value)
    assert message.startswith("dump of PostgreSQL database 'postgres' failed: pg_dump exited 1: ")
    assert 'password authentication failed for user "postgres"' in message
    assert "check the dump's host, port, user and password_file" in message
    assert list(staging.iterdir()) == []


def test_postgresql_missing_database(postgres: PostgresServer, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    with pytest.raises(DumpFailed, match='database "no-such-db" does not exist'):
        take_dumps([pg_spec(postgres, tmp_path, "no-such-db")], staging, io.BytesIO())
    assert list(staging.iterdir()) == []


def test_postgresql_server_down(postgres: PostgresServer, tmp_path: Path) -> None:
    with pytest.raises(DumpFailed, match=r"pg_dump exited 1: Is the server running on that host"):
        take_dumps(
            [pg_spec(postgres, tmp_path, "postgres", port=free_port())],
            tmp_path / "s",
            io.BytesIO(),
        )


def test_postgresql_dump_past_its_timeout_is_stopped_and_leaves_nothing(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    postgres.psql('CREATE DATABASE "locked"')
    postgres.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)", "locked")
    argv = ["psql", "-X", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", postgres.user]
    holder = subprocess.Popen(
        [
            *argv,
            "-d",
            "locked",
            "-c",
            "BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120);",
        ],
        env=postgres.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_lock(postgres)
        spec = pg_spec(postgres, tmp_path, "locked", timeout_s=3.0)
        staging, log, failure, seen = dump_while_blocked(spec, tmp_path, "pg_dump")
        assert isinstance(failure, DumpFailed)
        assert "pg_dump did not finish within 3 s and was stopped" in str(failure)
        assert list(staging.iterdir()) == []
        assert b"did not finish within 3 s" in log.getvalue()
        assert seen and all(postgres.password not in line for line in seen), seen
        assert command_lines("pg_dump") == [], "the timeout left pg_dump running"
    finally:
        holder.terminate()
        holder.wait()


def dump_while_blocked(
    spec: DumpSpec, tmp_path: Path, tool: str
) -> tuple[Path, io.BytesIO, BaseException | None, list[str]]:
    """Run take_dumps in a thread while a lock blocks the tool; meanwhile read the tool's command
    line as `ps` would. Returns the staging folder, log, what take_dumps raised, the lines seen."""
    staging = tmp_path / "staging"
    log = io.BytesIO()
    outcome: list[BaseException | None] = []

    def dump() -> None:
        try:
            take_dumps([spec], staging, log)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=dump)
    thread.start()
    seen: list[str] = []
    while thread.is_alive() and not seen:
        seen = command_lines(tool)
        time.sleep(0.05)
    thread.join()
    return staging, log, outcome[0], seen


def command_lines(tool: str) -> list[str]:
    """The command lines of running processes whose program is `tool` (what `ps` shows)."""
    lines = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == tool.encode():
            lines.append(b" ".join(argv).decode(errors="replace"))
    return lines


def wait_for_lock(server: PostgresServer) -> None:
    query = (
        "SELECT count(*) FROM pg_locks"
        " WHERE mode = 'AccessExclusiveLock' AND granted AND relation IS NOT NULL"
    )
    for _ in range(200):
        if int(server.psql(query, "locked")) > 0:
            return
        time.sleep(0.05)
    raise AssertionError("the lock was never taken")


# MariaDB


def my_fill(server: MariadbServer, database: str) -> None:
    server.sql(
        f"""
        CREATE DATABASE `{database}` CHARACTER SET utf8mb4;
        USE `{database}`;
        CREATE TABLE items (id INT PRIMARY KEY, name LONGTEXT NOT NULL, data LONGBLOB,
                            price DECIMAL(12, 2), seen DATETIME(6)) ENGINE=InnoDB;
        CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, item INT, what VARCHAR(20));
        CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW
          INSERT INTO audit (item, what) VALUES (NEW.id, 'insert');
        CREATE PROCEDURE item_count() SELECT COUNT(*) FROM items;
        INSERT INTO items SELECT seq, CONCAT('item ', seq), UNHEX(MD5(seq)), seq * 1.25,
               '2026-01-01 00:00:00' + INTERVAL seq HOUR FROM seq_1_to_500;
        """
    )
    tricky = (
        f"INSERT INTO items VALUES (1001, {my_text(UNICODE)}, X'{SMALL_BLOB.hex()}', NULL, NULL);"
        f"INSERT INTO items VALUES (1002, {my_text(BIG_TEXT)}, X'{BIG_BLOB.hex()}', 0, NOW(6));"
    )
    server.sql(tricky, database)


def my_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def my_rows(server: MariadbServer, database: str) -> dict[str, bytes]:
    queries = {
        "items": "SELECT id, HEX(name), HEX(data), price, seen FROM items ORDER BY id",
        "audit": "SELECT * FROM audit ORDER BY id",
    }
    return {table: server.sql(query, database) for table, query in queries.items()}


def my_spec(server: MariadbServer, tmp_path: Path, database: str, **kw: object) -> DumpSpec:
    options: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password_file": str(server.password_file(tmp_path)),
    }
    options.update(kw)
    return DumpSpec("mysql", database, **options)  # type: ignore[arg-type]


def my_restore_into(server: MariadbServer, dump: Path) -> None:
    server.sql("CREATE DATABASE `shop-restored` CHARACTER SET utf8mb4")
    server.load(dump, "shop-restored")


def my_check_restored(server: MariadbServer, original: dict[str, bytes]) -> None:
    assert original["items"].count(b"\n") == 502 and original["audit"].count(b"\n") == 502
    row = server.sql("SELECT HEX(name), HEX(data) FROM items WHERE id = 1001", "shop-restored")
    name, data = row.decode().split()
    assert bytes.fromhex(name) == UNICODE.encode() and bytes.fromhex(data) == SMALL_BLOB
    big = server.sql("SELECT HEX(data) FROM items WHERE id = 1002", "shop-restored")
    assert bytes.fromhex(big.decode().strip()) == BIG_BLOB
    assert server.sql("CALL item_count()", "shop-restored") == b"502\n"
    triggers = (
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS"
        " WHERE TRIGGER_SCHEMA = 'shop-restored'"
    )
    assert server.sql(triggers) == b"items_audit\n"


# Both engines


@dataclass(frozen=True)
class Engine:
    """One database engine's side of the shared dump test: its fixture and its SQL."""

    fixture: str
    prefix: str  # of the dump file's name
    log_line: bytes  # what the dump log says when the dump ends
    fill: Callable[[Any, str], None]
    spec: Callable[..., DumpSpec]
    rows: Callable[[Any, str], dict[str, bytes]]
    restore_into: Callable[[Any, Path], None]
    check_restored: Callable[[Any, dict[str, bytes]], None]


POSTGRESQL = Engine(
    "postgres",
    "postgresql",
    b"dump PostgreSQL database 'shop' ended: ",
    pg_fill,
    pg_spec,
    pg_rows,
    pg_restore_into,
    pg_check_restored,
)
MARIADB = Engine(
    "mariadb",
    "mysql",
    b"dump MySQL/MariaDB database 'shop' ended: ",
    my_fill,
    my_spec,
    my_rows,
    my_restore_into,
    my_check_restored,
)


@pytest.mark.parametrize("engine", [POSTGRESQL, MARIADB], ids=["postgresql", "mariadb"])
def test_a_dump_restores_every_row(
    engine: Engine, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server = request.getfixturevalue(engine.fixture)
    engine.fill(server, "shop")
    staging = staging_folder(tmp_path)
    log = io.BytesIO()

    written = take_dumps([engine.spec(server, tmp_path, "shop")], staging, log)

    dump_name = f"{engine.prefix}-shop.sql"
    assert written == [staging / dump_name]
    assert sorted(p.name for p in staging.iterdir()) == [dump_name]
    assert staging.stat().st_mode & 0o777 == 0o700
    assert engine.log_line in log.getvalue()
    restored = backup_and_restore(staging, tmp_path) / dump_name
    assert restored.read_bytes() == written[0].read_bytes()

    engine.restore_into(server, restored)
    original = engine.rows(server, "shop")
    assert engine.rows(server, "shop-restored") == original
    engine.check_restored(server, original)


def test_mariadb_all_databases(mariadb: MariadbServer, tmp_path: Path) -> None:
    mariadb.sql(
        "CREATE DATABASE every; CREATE TABLE every.marker (v TEXT);"
        " INSERT INTO every.marker VALUES ('in every')"
    )
    written = take_dumps([my_spec(mariadb, tmp_path, "all")], tmp_path / "staging", io.BytesIO())
    text = written[0].read_text()
    assert written[0].name == "mysql-all.sql"
    assert "CREATE DATABASE /*!32312 IF NOT EXISTS*/ `every`" in text and "in every" in text


def test_mariadb_wrong_password_fails_with_what_to_do(
    mariadb: MariadbServer, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pass"
    wrong.write_text("not the password\n")
    staging = tmp_path / "staging"
    with pytest.raises(DumpFailed) as failed:
        take_dumps(
            [my_spec(mariadb, tmp_path, "mysql", password_file=str(wrong))], staging, io.BytesIO()
        )
    message = str(failed.value)
    assert message.startswith(
        "dump of MySQL/MariaDB database 'mysql' failed: mariadb-dump exited 2: "
    )
    assert "Access denied for user 'backup'@'127.0.0.1'" in message
    assert "check the dump's host, port, user and password_file" in message
    assert list(staging.iterdir()) == []


def test_mariadb_missing_database(mariadb: MariadbServer, tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    with pytest.raises(DumpFailed, match="Unknown database 'no-such-db'"):
        take_dumps([my_spec(mariadb, tmp_path, "no-such-db")], staging, io.BytesIO())
    assert list(staging.iterdir()) == []


def test_mariadb_server_down(mariadb: MariadbServer, tmp_path: Path) -> None:
    with pytest.raises(DumpFailed, match=r"mariadb-dump exited 2: .*Can't connect to server"):
        take_dumps(
            [my_spec(mariadb, tmp_path, "shop", port=free_port())], tmp_path / "s", io.BytesIO()
        )


def test_mariadb_dump_past_its_timeout_is_stopped_and_leaves_nothing(
    mariadb: MariadbServer, tmp_path: Path
) -> None:
    mariadb.sql(
        "CREATE DATABASE locked; CREATE TABLE locked.t (v INT); INSERT INTO locked.t VALUES (1)"
    )
    holder = subprocess.Popen(
        [*mariadb.client(), "-e", "LOCK TABLES locked.t WRITE; SELECT SLEEP(120)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if b"SLEEP" in mariadb.sql("SHOW PROCESSLIST"):
                break
            time.sleep(0.05)
        spec = my_spec(mariadb, tmp_path, "locked", timeout_s=3.0)
        staging, log, failure, seen = dump_while_blocked(spec, tmp_path, "mariadb-dump")
        assert isinstance(failure, DumpFailed)
        assert "mariadb-dump did not finish within 3 s and was stopped" in str(failure)
        assert list(staging.iterdir()) == []
        assert b"did not finish within 3 s" in log.getvalue()
        assert seen and all(mariadb.password not in line for line in seen), seen
        assert all("password" not in line for line in seen), seen
        assert command_lines("mariadb-dump") == []
    finally:
        holder.terminate()
        holder.wait()


def test_mariadb_over_its_socket(mariadb: MariadbServer, tmp_path: Path) -> None:
    """A host that is a path is the server's socket (root authenticates without a password)."""
    mariadb.sql(
        "CREATE DATABASE sockdb; CREATE TABLE sockdb.m (v TEXT);"
        " INSERT INTO sockdb.m VALUES ('via the socket')"
    )
    spec = DumpSpec("mysql", "sockdb", host=str(mariadb.socket), user="root")
    written = take_dumps([spec], tmp_path / "staging", io.BytesIO())
    assert "via the socket" in written[0].read_text()


def test_missing_tools_fail_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(DumpFailed, match=r"pg_dump cannot run .*Debian: postgresql-client"):
        take_dumps([DumpSpec("postgresql", "shop")], tmp_path / "s", io.BytesIO())
    with pytest.raises(DumpFailed, match=r"mysqldump cannot run .*Debian: mariadb-client"):
        take_dumps([DumpSpec("mysql", "shop")], tmp_path / "s", io.BytesIO())
    assert shutil.which("pg_dump") is None and os.listdir(tmp_path / "s") == []


ODD_NAME = "-x dbname=postgres ünï"
"""A name that would be an option, a connection string, and is not ASCII."""


def test_odd_database_names_are_taken_literally(
    postgres: PostgresServer, mariadb: MariadbServer, tmp_path: Path
) -> None:
    postgres.psql(f'CREATE DATABASE "{ODD_NAME}"')
    postgres.psql("CREATE TABLE odd (v text); INSERT INTO odd VALUES ('pg odd')", ODD_NAME)
    mariadb.sql(f"CREATE DATABASE `{ODD_NAME}`; CREATE TABLE `{ODD_NAME}`.odd (v TEXT);")
    mariadb.sql(f"INSERT INTO `{ODD_NAME}`.odd VALUES ('my odd')")
    specs = [pg_spec(postgres, tmp_path, ODD_NAME), my_spec(mariadb, tmp_path, ODD_NAME)]
    written = take_dumps(specs, tmp_path / "staging", io.BytesIO())
    encoded = "-x%20dbname%3Dpostgres%20%C3%BCn%C3%AF.sql"
    assert [p.name for p in written] == [f"postgresql-{encoded}", f"mysql-{encoded}"]
    assert "pg odd" in written[0].read_text() and "my odd" in written[1].read_text()
