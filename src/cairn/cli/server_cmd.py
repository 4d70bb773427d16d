"""cairn server: make a data folder, run the backup server, and administer it from its own
machine.

Administration (tenants, tokens, audit) acts on the server's data folder directly, so it needs
the machine, not the network; a running server sees the changes at its next request. Only `init`
and `serve` make a data folder. Changes go through the audited admin operations
(server/adminops.py), recorded as ``cli:<unix user>``; this module parses and presents.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn.cli import removed_cmd, standby_cmd, statekey_cmd, target_cmd, user_cmd
from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.serverdata import (
    cli_actor,
    data_option,
    parse_quota,
    server_options,
    server_services,
    server_settings,
)
from cairn.core.addresses import is_loopback
from cairn.core.clock import epoch_ms
from cairn.core.units import format_size, parse_interval
from cairn.server.auth import Role
from cairn.server.errors import (
    AuditBehind,
    AuditBroken,
    DamageFound,
    ListenFailed,
    ServerSetupError,
)
from cairn.server.retention import PERIODS, parse_policy

if TYPE_CHECKING:  # the server stack (Starlette, Prometheus, x509) loads in the handlers only
    from cairn.server.context import Services, Settings
    from cairn.server.tenants import Tenant

DEFAULT_LISTEN = "127.0.0.1:8443"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    del common  # the client's options (repository, password, cache) do not apply to a server
    shared = server_options()
    p = sub.add_parser("server", parents=[shared], help="run or administer a backup server")
    data_option(p)
    p.set_defaults(data=None)
    actions = p.add_subparsers(dest="server_command", metavar="ACTION", required=True)

    init = actions.add_parser(
        "init", parents=[shared], help="make a data folder and its certificate (serve does too)"
    )
    data_option(init)
    init.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name or address clients use, for the self-signed certificate (repeatable)",
    )
    init.set_defaults(run=run_init)

    fingerprint = actions.add_parser(
        "fingerprint", parents=[shared], help="print the server certificate's SHA-256 fingerprint"
    )
    data_option(fingerprint)
    fingerprint.add_argument("--tls-cert", help="this PEM certificate instead of the data folder's")
    fingerprint.set_defaults(run=run_fingerprint)

    serve = actions.add_parser("serve", parents=[shared], help="run the server")
    data_option(serve)
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    serve.add_argument("--tls-cert", help="PEM certificate (default: self-signed, made once)")
    serve.add_argument("--tls-key", help="PEM private key of --tls-cert")
    serve.add_argument(
        "--insecure-http", action="store_true", help="plain HTTP; refused beyond loopback"
    )
    serve.add_argument(
        "--access-log", action="store_true", help="log one JSON line per request on stderr"
    )
    serve.add_argument("--max-uploads", type=int, default=16, help="uploads in memory at once")
    serve.add_argument("--max-object", default="64M", help="largest object accepted (%(default)s)")
    serve.add_argument(
        "--client-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="a client must send a request's head within this, and never pause its body longer "
        "(default %(default)s)",
    )
    serve.add_argument(
        "--gc-every",
        type=float,
        metavar="MINUTES",
        help="run retention and garbage collection for every tenant this often (default: never)",
    )
    serve.add_argument(
        "--backup-releases-locks",
        action="store_true",
        help="let a backup token remove the locks it saved itself, so the server's GC need not "
        "wait out their lease (default: a backup token removes nothing)",
    )
    serve.add_argument(
        "--notify",
        metavar="FILE",
        help="alert on the job results agents report: a TOML file of [[notify]] channels and "
        "[alerts], as in the agent's file (docs/agent.md)",
    )
    serve.add_argument(
        "--scrub-every",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="re-hash every stored object this often, with --gc-every (default %(default)s)",
    )
    serve.add_argument(
        "--gc-grace",
        type=float,
        default=0.0,
        metavar="HOURS",
        help="condemned data waits at least this long before it is deleted",
    )
    serve.add_argument(
        "--storage",
        metavar="LOCATION",
        help="keep the tenants' objects there, like s3:https://HOST/BUCKET/PREFIX (the "
        "database stays in --data; recorded there at first use; default: the data folder)",
    )
    standby_cmd.add_serve_options(serve)
    serve.set_defaults(run=run_serve)

    keep = actions.add_parser(
        "retention", parents=[shared], help="set a tenant's server-side retention policy"
    )
    data_option(keep)
    keep.add_argument("tenant")
    for period in PERIODS:
        keep.add_argument(
            f"--keep-{period}", type=int, metavar="N", help=f"first of the last N {period} periods"
        )
    keep.add_argument("--keep-within", metavar="DURATION", help="everything within, like 30d")
    keep.add_argument("--clear", action="store_true", help="no server-side retention")
    keep.set_defaults(run=run_retention)

    gc = actions.add_parser("gc", parents=[shared], help="run retention and GC now")
    data_option(gc)
    gc.add_argument("tenant", nargs="?", help="one tenant (default: all)")
    gc.set_defaults(run=run_gc)
    scrub = actions.add_parser("scrub", parents=[shared], help="re-hash stored objects now")
    data_option(scrub)
    scrub.add_argument("tenant", nargs="?", help="one tenant (default: all)")
    scrub.set_defaults(run=run_scrub)

    tenant = actions.add_parser("tenant", parents=[shared], help="manage tenants")
    tenants = tenant.add_subparsers(dest="tenant_command", metavar="ACTION", required=True)
    add = tenants.add_parser("add", parents=[shared], help="create a tenant")
    data_option(add)
    add.add_argument("name")
    add.add_argument("--quota", help="stored bytes allowed, like 50G (default: none)")
    add.set_defaults(run=run_tenant_add)
    ls = tenants.add_parser("list", parents=[shared], help="list tenants and their usage")
    data_option(ls)
    ls.set_defaults(run=run_tenant_list)
    quota = tenants.add_parser("quota", parents=[shared], help="set or clear a quota")
    data_option(quota)
    quota.add_argument("name")
    quota.add_argument("size", help="like 50G, or none")
    quota.set_defaults(run=run_tenant_quota)

    token = actions.add_parser("token", parents=[shared], help="manage tokens")
    tokens = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = tokens.add_parser("add", parents=[shared], help="issue a token (shown once)")
    data_option(issue)
    issue.add_argument("tenant", nargs="?", help="the tenant (omit for --role server-admin)")
    issue.add_argument("--role", required=True, choices=[r.value for r in Role])
    issue.add_argument("--label", default="", help="a note: which machine, which person")
    issue.add_argument(
        "--expires",
        metavar="DURATION",
        help="refuse the token after this long, e.g. 90d, 12h, 2w (default: never)",
    )
    issue.set_defaults(run=run_token_add)
    tls = tokens.add_parser("list", parents=[shared], help="list tokens (never their secrets)")
    data_option(tls)
    tls.set_defaults(run=run_token_list)
    revoke = tokens.add_parser("revoke", parents=[shared], help="revoke a token at once")
    data_option(revoke)
    revoke.add_argument("id", help="the token's ID (the part after cairn_)")
    revoke.set_defaults(run=run_token_revoke)

    jobs = actions.add_parser(
        "jobs", parents=[shared], help="the latest result agents reported for each job"
    )
    data_option(jobs)
    jobs.add_argument("tenant", nargs="?", help="one tenant (default: all)")
    jobs.add_argument(
        "--silent-after",
        default="26h",
        metavar="DURATION",
        help="mark a job silent when its last success arrived longer ago (%(default)s)",
    )
    jobs.set_defaults(run=run_jobs)

    audit = actions.add_parser("audit", parents=[shared], help="check the audit log's chain")
    data_option(audit)
    audit.set_defaults(run=run_audit)
    _state_actions(actions, shared)
    target_cmd.register(actions, shared)
    removed_cmd.register(actions, shared)
    statekey_cmd.register(actions, shared)
    user_cmd.register(actions, shared)
    standby_cmd.register(actions, shared)


def _state_actions(actions: Any, shared: argparse.ArgumentParser) -> None:
    """`export` and `import` of the server's state (design 14.15)."""
    export = actions.add_parser(
        "export", parents=[shared], help="write the server's state (not the repositories) as JSON"
    )
    data_option(export)
    export.add_argument("file", nargs="?", help="where to write it (default: standard output)")
    export.set_defaults(run=run_export)
    load = actions.add_parser(
        "import", parents=[shared], help="load an exported state into a new data folder"
    )
    data_option(load)
    load.add_argument("file", help="the file `cairn server export` wrote ('-': standard input)")
    load.set_defaults(run=run_import)


def run_serve(ctx: Context) -> int:
    """Bind first, then make what is missing (data folder, certificate), then announce: a port in
    use fails with E076 before anything is written or said."""
    from cairn.server.app import open_services, probe_storage

    settings = server_settings(ctx)
    if not ctx.args.client_timeout > 0:
        raise UsageError("--client-timeout must be a positive number of seconds")
    host, port = _listen(ctx.args.listen)
    loopback = is_loopback(host)
    if ctx.args.insecure_http and not loopback:
        raise UsageError(
            f"refusing plain HTTP on {host}: tokens would cross the network in the clear; "
            "drop --insecure-http (a self-signed certificate is made for you)"
        )
    if bool(ctx.args.tls_cert) != bool(ctx.args.tls_key):
        raise UsageError("give both --tls-cert and --tls-key, or neither")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    requests = logging.getLogger("cairn.server.requests")
    requests.setLevel(logging.INFO if ctx.args.access_log else logging.WARNING)
    with _bound(host, port) as listener:
        services = open_services(settings, clock=ctx.clock, replicate=True)
        services.standby = standby_cmd.lease_holder(ctx, services)
        probe_storage(services)
        for tenant in services.tenants.all():
            services.tenants.recount(tenant)
        tls: dict[str, str] = {}
        if not ctx.args.insecure_http:
            cert, key = _certificate(ctx, settings, [host])
            tls = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
            ctx.output.text(f"certificate fingerprint (SHA-256): {_fingerprint(cert)}")
        scheme = "cairn" if ctx.args.insecure_http else "cairns"
        where = _shown_address(listener)
        stored = services.tenants.storage_location("tenants") or settings.data
        ctx.output.text(f"serving {stored} at {scheme}://{where}/TENANT")
        _run_uvicorn(ctx, services, listener, tls)
    return 0


def _run_uvicorn(
    ctx: Context, services: Services, listener: socket.socket, tls: dict[str, str]
) -> None:
    import uvicorn  # the server's own dependency: a client never loads it

    from cairn.server.app import create_app
    from cairn.server.deadlines import deadline_protocol  # imports uvicorn too
    from cairn.web.console import mount_console

    config = uvicorn.Config(
        mount_console(create_app(services), services),
        log_level="warning",
        timeout_keep_alive=30,
        limit_concurrency=512,
        http=deadline_protocol(ctx.args.client_timeout),
        **tls,  # type: ignore[arg-type]
    )
    uvicorn.Server(config).run(sockets=[listener])


@contextlib.contextmanager
def _bound(host: str, port: int) -> Iterator[socket.socket]:
    """The listening socket, made before anything is announced or written (ListenFailed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise ListenFailed(f"cannot listen on {host}:{port}: {_why_not_bound(exc)}") from exc
    with listener:
        yield listener


def _why_not_bound(exc: OSError) -> str:
    reasons = {
        errno.EADDRINUSE: "another program (or another cairn server) uses that port; stop it, "
        "or choose another port with --listen",
        errno.EADDRNOTAVAIL: "this machine has no such address; use one of its own, or 0.0.0.0",
        errno.EACCES: "ports below 1024 need root (or CAP_NET_BIND_SERVICE); choose a port "
        "above 1023",
    }
    return reasons.get(exc.errno or 0, exc.strerror or str(exc))


def _shown_address(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _certificate(ctx: Context, settings: Settings, hosts: list[str]) -> tuple[Path, Path]:
    if getattr(ctx.args, "tls_cert", None):
        return Path(ctx.args.tls_cert), Path(ctx.args.tls_key)
    from cairn.server.tls import ensure_self_signed  # cryptography's x509: the server's alone

    folder = settings.data / "tls"
    cert, key, made = ensure_self_signed(folder, hosts, ctx.clock)
    if made:
        ctx.output.text(f"made a self-signed certificate in {folder}")
    return cert, key


def _fingerprint(cert: Path) -> str:
    from cairn.server.tls import fingerprint  # see _certificate

    return fingerprint(cert)


def run_init(ctx: Context) -> int:
    """Make a data folder (0700, server.db 0600) and its self-signed certificate, and show the
    fingerprint clients pin; on an existing data folder, change nothing and show it again."""
    from cairn.server.app import init_data_folder

    settings = server_settings(ctx)
    made = init_data_folder(settings.data)
    cert, _key = _certificate(ctx, settings, ctx.args.name)
    shown = _fingerprint(cert)
    if made:
        ctx.output.text(f"made a server data folder at {settings.data}")
    else:
        ctx.output.text(f"{settings.data} is already a server data folder; nothing changed")
    ctx.output.text(f"certificate fingerprint (SHA-256): {shown}")
    ctx.output.text(f"next: cairn server tenant add NAME --data {settings.data}")
    ctx.output.json({"data": str(settings.data), "created": made, "fingerprint": shown})
    return 0


def run_fingerprint(ctx: Context) -> int:
    """What a client pins: give it to users, who can set CAIRN_SERVER_FINGERPRINT before their
    first connection, or compare it with what `cairn init` printed."""
    if ctx.args.tls_cert:
        cert = Path(ctx.args.tls_cert)
    else:
        settings = server_settings(ctx)
        server_services(ctx)  # a mistyped --data is refused like everywhere else
        cert = settings.data / "tls" / "cert.pem"
        if not cert.exists():
            raise ServerSetupError(
                f"{settings.data} has no certificate yet ({cert}): `cairn server init` or "
                "`cairn server serve` makes one; with --tls-cert, give that file here too"
            )
    shown = _fingerprint(cert)
    ctx.output.text(shown)
    ctx.output.json({"certificate": str(cert), "fingerprint": shown})
    return 0


def _listen(text: str) -> tuple[str, int]:
    """HOST:PORT; port 0 picks a free port (the serving line shows which)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {text!r}: use HOST:PORT, like 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def run_tenant_add(ctx: Context) -> int:
    quota = parse_quota(ctx.args.quota)
    tenant, token = server_services(ctx).admin.create_tenant(cli_actor(), ctx.args.name, quota)
    ctx.output.text(f"tenant {tenant.name} created; quota: {_show_quota(quota)}")
    ctx.output.text(f"tenant-admin token (shown once; run `cairn init` with it): {token}")
    ctx.output.json({"tenant": tenant.name, "quota": quota, "admin_token": str(token)})
    return 0


def run_tenant_list(ctx: Context) -> int:
    tenants = server_services(ctx).tenants.all()
    rows = [[t.name, format_size(t.used), _show_quota(t.quota)] for t in tenants]
    ctx.output.table(["tenant", "used", "quota"], rows)
    ctx.output.json(
        [{"name": t.name, "id": t.id, "used": t.used, "quota": t.quota} for t in tenants]
    )
    return 0


def run_tenant_quota(ctx: Context) -> int:
    quota = None if ctx.args.size == "none" else parse_quota(ctx.args.size)
    server_services(ctx).admin.set_quota(cli_actor(), ctx.args.name, quota)
    ctx.output.text(f"quota of {ctx.args.name}: {_show_quota(quota)}")
    ctx.output.json({"tenant": ctx.args.name, "quota": quota})
    return 0


def run_token_add(ctx: Context) -> int:
    role = Role(ctx.args.role)
    tenant = ctx.args.tenant
    if (role is Role.SERVER_ADMIN) == (tenant is not None):
        raise UsageError("a server-admin token has no tenant; every other role needs one")
    expires_ms = _expiry(ctx.args.expires, ctx) if ctx.args.expires else None
    admin = server_services(ctx).admin
    token = admin.issue_token(cli_actor(), role, tenant, ctx.args.label, expires_ms)
    ctx.output.text(f"{role.value} token{f' for {tenant}' if tenant else ''} (shown once): {token}")
    if expires_ms is not None:
        ctx.output.text(f"it expires at {_show_time(expires_ms)}")
    ctx.output.json(
        {
            "id": token.id,
            "role": role.value,
            "tenant": tenant,
            "token": str(token),
            "expires_ms": expires_ms,
        }
    )
    return 0


def _expiry(text: str, ctx: Context) -> int:
    try:
        seconds = parse_interval(text)
    except ValueError as exc:
        raise UsageError(f"--expires: {exc}") from exc
    if seconds <= 0:
        raise UsageError("--expires must be a positive duration, like 90d")
    return epoch_ms(ctx.clock) + int(seconds * 1000)


def _show_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _token_state(token: dict[str, Any], now_ms: int) -> str:
    if token["revoked_ms"]:
        return "revoked"
    expires = token["expires_ms"]
    if expires is not None and now_ms >= int(expires):
        return "expired"
    return "active" if expires is None else f"active until {_show_time(int(expires))}"


def run_token_list(ctx: Context) -> int:
    tokens = server_services(ctx).tokens.list()
    now_ms = epoch_ms(ctx.clock)
    rows = [
        [
            str(t["id"]),
            str(t["tenant"] or "-"),
            str(t["role"]),
            str(t["label"]),
            _token_state(t, now_ms),
        ]
        for t in tokens
    ]
    ctx.output.table(["id", "tenant", "role", "label", "state"], rows)
    ctx.output.json(tokens)
    return 0


def run_token_revoke(ctx: Context) -> int:
    server_services(ctx).admin.revoke_token(cli_actor(), ctx.args.id)
    ctx.output.text(f"token {ctx.args.id} revoked")
    ctx.output.json({"revoked": ctx.args.id})
    return 0


def run_audit(ctx: Context) -> int:
    """Verify the chain (E070 when broken), then that no change in the database is newer than
    the newest entry (E077: records lost, or entries removed from the end)."""
    services = server_services(ctx)
    count, broken = services.audit.verify()
    behind = services.audit.behind() if broken is None else None
    full = _disk_full(services.settings.data)
    ctx.output.json(
        {
            "entries": count,
            "intact": broken is None,
            "first_broken": broken,
            "behind": behind,
            "disk_full": full,
        }
    )
    if full:
        ctx.output.text(
            f"warning: the disk of {services.settings.data} is full: a running server cannot "
            "write its audit log, so it refuses every request until space is freed"
        )
    if broken is not None:
        raise AuditBroken(
            f"the audit log's chain breaks at entry {broken}: it was edited or entries removed"
        )
    if behind is not None:
        raise AuditBehind(
            f"the audit log is behind the database: {behind} (the chain of its {count} entries "
            "is intact). Records were lost (an older Cairn, or the server killed before it "
            "answered) or entries were removed from the end"
        )
    ctx.output.text(
        f"audit log intact: {count} entries, every hash chains, and no change in the database "
        "is newer than the newest entry"
    )
    return 0


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _show_quota(quota: int | None) -> str:
    return "none" if quota is None else format_size(quota)


def run_retention(ctx: Context) -> int:
    services = server_services(ctx)
    args = ctx.args
    if args.clear:
        services.admin.set_retention(cli_actor(), args.tenant, None)
        ctx.output.text(f"{args.tenant}: no server-side retention")
        ctx.output.json({"tenant": args.tenant, "retention": None})
        return 0
    periods = {p: getattr(args, f"keep_{p}") for p in PERIODS}
    policy = parse_policy(args.keep_within, **periods)
    services.admin.set_retention(cli_actor(), args.tenant, policy)
    ctx.output.text(f"{args.tenant}: keep {policy.describe()} (by arrival, per uploading token)")
    ctx.output.json({"tenant": args.tenant, "retention": policy.describe()})
    return 0


def _chosen_tenants(services: Services, name: str | None) -> list[Tenant]:
    return [services.tenants.get(name)] if name else services.tenants.all()


def run_jobs(ctx: Context) -> int:
    try:
        silent_after = parse_interval(ctx.args.silent_after)
    except ValueError as exc:
        raise UsageError(f"--silent-after: {exc}") from exc
    services = server_services(ctx)
    now_ms = epoch_ms(ctx.clock)
    rows: list[list[str]] = []
    found: list[dict[str, Any]] = []
    for tenant in _chosen_tenants(services, ctx.args.tenant):
        for state in services.jobs.latest(tenant.name):
            shown = state.as_json(now_ms)
            shown["tenant"] = tenant.name
            shown["silent"] = _silent(state.last_success_ms, now_ms, silent_after)
            found.append(shown)
            rows.append(_job_row(shown))
    if rows:
        headers = ["tenant", "host", "job", "last run", "outcome", "last success", ""]
        ctx.output.table(headers, rows)
    else:
        ctx.output.text("no job results reported yet")
    ctx.output.json(found)
    return 0


def _silent(last_success_ms: int | None, now_ms: int, silent_after: float) -> bool:
    return last_success_ms is None or (now_ms - last_success_ms) / 1000 > silent_after


def _job_row(job: dict[str, Any]) -> list[str]:
    now_ms = job["received_ms"] + job["age_s"] * 1000
    success = job["last_success_ms"]
    mark = "SILENT" if job["silent"] else ("FAILING" if job["outcome"] == "failure" else "")
    outcome = job["outcome"] + (f" {job['error_code']}" if job["error_code"] else "")
    return [
        job["tenant"],
        job["host"],
        job["job"],
        f"{_age(job['age_s'])} ago",
        outcome,
        "never" if success is None else f"{_age((now_ms - success) / 1000)} ago",
        mark,
    ]


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def run_gc(ctx: Context) -> int:
    services = server_services(ctx)
    reports = [services.janitor.collect(t) for t in _chosen_tenants(services, ctx.args.tenant)]
    for r in reports:
        line = (
            f"{r.tenant}: forgot {r.forgotten} snapshots; deleted {r.swept_packs} packs "
            f"({format_size(r.swept_bytes)}); condemned {r.condemned_packs} packs"
        )
        if r.records_waiting:
            line += f"; {r.records_waiting} deletion record(s) wait for running sessions"
        ctx.output.text(line + (f" ({r.skipped})" if r.skipped else ""))
    ctx.output.json([asdict(r) for r in reports])
    return 0


def run_scrub(ctx: Context) -> int:
    services = server_services(ctx)
    reports = [services.janitor.scrub(t) for t in _chosen_tenants(services, ctx.args.tenant)]
    for r in reports:
        ctx.output.text(f"{r.tenant}: {len(r.damaged)} damaged objects")
        for line in r.damaged:
            ctx.output.text(f"  {line}")
    ctx.output.json([asdict(r) for r in reports])
    if any(r.damaged for r in reports):
        raise DamageFound(
            f"{sum(len(r.damaged) for r in reports)} stored objects fail their hash; the "
            "tenant's owner should run `cairn check --repair --read-data`"
        )
    return 0


def run_export(ctx: Context) -> int:
    """The state as one JSON document: tenants, token hashes, quotas, retention, arrivals, job
    results, the audit log, alert state. The file is made 0600 (it holds token hashes)."""
    services = server_services(ctx)
    text = json.dumps(services.admin.export_state(cli_actor()), indent=1) + "\n"
    if not ctx.args.file:
        sys.stdout.write(text)
        return 0
    target = Path(ctx.args.file)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    except OSError as exc:
        raise ServerSetupError(f"cannot write the server state to {target}: {exc}") from exc
    ctx.output.text(f"wrote the server state of {services.settings.data} to {target}")
    return 0


def run_import(ctx: Context) -> int:
    """Make a new data folder from an exported state; refuses a folder that is not empty."""
    from cairn.server.app import open_services  # see _settings
    from cairn.server.state import check_document, require_empty

    settings = server_settings(ctx)
    document = _read_state(ctx.args.file)
    check_document(document)  # before anything is made
    require_empty(settings.data)
    services = open_services(settings, clock=ctx.clock)
    counts = services.admin.import_state(cli_actor(), document)
    ctx.output.text(
        f"imported {counts['tenants']} tenants, {counts['tokens']} tokens, "
        f"{counts['snapshots']} arrivals, {counts['job_results']} job results and "
        f"{counts['audit']} audit entries into {settings.data}"
    )
    ctx.output.text(
        "the tenants' repositories are not part of the state: copy each tenants/<id>/ folder "
        "(and tls/, to keep the certificate clients pinned) from the old data folder"
    )
    ctx.output.json({"data": str(settings.data), "imported": counts})
    return 0


def _read_state(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        return json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ServerSetupError(f"cannot read the server state {name}: {exc}") from exc
