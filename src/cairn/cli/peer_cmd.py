"""cairn peer: peer mode (design 20). `init` sets a machine up, `invite` and `join` pair two
machines with a one-time code, `serve` runs the peer (its server and its own backup job),
`backup` runs one backup onto the peers, `status`, `list`, `forget` and `restore`.

Everything acts on the peer folder (`--data DIR`, or CAIRN_PEER_DATA); the passphrase of this
machine's backups comes as every command's does (CAIRN_PASSWORD, CAIRN_PASSWORD_FILE,
CAIRN_PASSWORD_COMMAND, or --password-file) and is passed to the backup children, never stored.
"""

from __future__ import annotations

import argparse
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.serverdata import server_options
from cairn.core.clock import epoch_ms
from cairn.core.units import format_size, parse_interval, parse_size
from cairn.peers.errors import PeerFolderError

DEFAULT_VALID = "15m"
DEFAULT_GRACE = "7d"
DEFAULT_ALERT_AFTER = "1d"
EXIT_ALERT = 190
"""`peer status`'s exit when the alert is raised (CAIRN-E190, docs/errors.md)."""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    del common  # the client's repository options do not apply: each copy is the peer's choice
    shared = server_options()
    p = sub.add_parser("peer", parents=[shared], help="back machines up to each other (peer mode)")
    _data(p)
    p.set_defaults(data=None)
    actions = p.add_subparsers(dest="peer_command", metavar="ACTION", required=True)

    init = _action(actions, shared, "init", "set this machine up as a peer", run_init)
    role = init.add_mutually_exclusive_group(required=True)
    role.add_argument("--offer", metavar="SIZE", help="offer this much space to each paired peer")
    role.add_argument("--client-only", action="store_true", help="offer no space (a laptop)")
    init.add_argument(
        "--listen", required=True, metavar="HOST:PORT", help="where other peers reach this one"
    )
    init.add_argument("--name", help="this peer's name (default: the host name)")
    init.add_argument("--path", action="append", default=[], help="a folder to back up")
    init.add_argument("--copies", type=int, default=2, help="copies on distinct peers (2)")

    invite = _action(actions, shared, "invite", "print a one-time invitation code", run_invite)
    invite.add_argument("--valid", default=DEFAULT_VALID, help="how long it is valid (15m)")

    join = _action(actions, shared, "join", "pair with the peer that gave CODE", run_join)
    join.add_argument("code", metavar="CODE")

    _action(actions, shared, "list", "list the paired peers", run_list)
    forget = _action(actions, shared, "forget", "unpair a peer (its data stays)", run_forget)
    forget.add_argument("name", metavar="NAME")

    serve = _action(actions, shared, "serve", "run the peer: its server and backups", run_serve)
    serve.add_argument("--backup-every", metavar="DURATION", help="run the backup job this often")
    serve.add_argument(
        "--no-announce", action="store_true", help="do not announce this peer on the LAN (mDNS)"
    )
    _grace(serve)
    _password(serve)

    backup = _action(actions, shared, "backup", "back this machine up to its peers", run_backup)
    backup.add_argument("paths", nargs="*", metavar="PATH", help="default: the paths of init")
    backup.add_argument("--copies", type=int, help="copies on distinct peers (default: init's)")
    _grace(backup)
    _password(backup)

    discover = _action(actions, shared, "discover", "list the peers seen on the LAN", run_discover)
    discover.add_argument("--wait", default="3s", help="how long to listen (3s)")
    discover.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also ask this address directly (where multicast does not pass; repeatable)",
    )

    status = _action(
        actions, shared, "status", "peers, their space, and this machine's copies", run_status
    )
    status.add_argument(
        "--alert-after",
        default=DEFAULT_ALERT_AFTER,
        metavar="DURATION",
        help="alert (exit 190) once short of r complete copies this long (1d)",
    )
    status.add_argument(
        "--notify",
        metavar="FILE",
        help="also tell the alert (and its end) by e-mail or webhook: a TOML file of "
        "[[notify]] channels, as the agent's (docs/agent.md)",
    )

    restore = _action(actions, shared, "restore", "restore from one peer's copy", run_restore)
    restore.add_argument("snapshot", nargs="?", default="latest", help="ID or latest")
    restore.add_argument("--from", dest="source", required=True, metavar="PEER")
    restore.add_argument("-t", "--target", required=True, help="folder to restore into")
    _password(restore)


def _action(actions: Any, shared: argparse.ArgumentParser, name: str, text: str, run: Any) -> Any:
    parser = actions.add_parser(name, parents=[shared], help=text)
    _data(parser)
    parser.set_defaults(run=run)
    return parser


def _data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", default=argparse.SUPPRESS, help="the peer folder (or CAIRN_PEER_DATA)"
    )


def _grace(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--grace",
        default=DEFAULT_GRACE,
        metavar="DURATION",
        help="how long a peer holding a copy may be away before its share goes elsewhere (7d)",
    )


def _duration(ctx: Context, option: str) -> float:
    text = getattr(ctx.args, option.replace("-", "_"))
    try:
        return parse_interval(text)
    except ValueError as exc:
        raise UsageError(f"--{option} {text!r}: {exc}") from exc


def _password(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-file", help="the passphrase of this machine's backups")


def _folder(ctx: Context) -> Path:
    data = ctx.args.data or os.environ.get("CAIRN_PEER_DATA")
    if not data:
        raise UsageError("give the peer folder: --data DIR or CAIRN_PEER_DATA")
    return Path(data).expanduser().resolve()


def _environ(ctx: Context) -> dict[str, str]:
    env = dict(os.environ)
    if getattr(ctx.args, "password_file", None):
        for name in ("CAIRN_PASSWORD", "CAIRN_PASSWORD_COMMAND"):
            env.pop(name, None)
        env["CAIRN_PASSWORD_FILE"] = str(Path(ctx.args.password_file).resolve())
    return env


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise PeerFolderError(f"--listen {text!r}: use HOST:PORT, like 192.168.1.20:8443")
    if host.strip("[]") in ("0.0.0.0", "::", ""):  # noqa: S104 (a check, not a bind)
        raise PeerFolderError(
            f"--listen {text!r}: give this machine's address on the network (other peers are "
            "told it), not a wildcard"
        )
    return host.strip("[]"), int(port)


def run_init(ctx: Context) -> int:
    from cairn.peers.peerserver import init_server
    from cairn.peers.store import PeerSettings, PeerStore
    from cairn.server.tenants import TENANT_NAME

    args = ctx.args
    folder = _folder(ctx)
    host, _port = _listen(args.listen)
    name = args.name or socket.gethostname().split(".")[0].lower()
    if not TENANT_NAME.fullmatch(name):
        raise PeerFolderError(f"peer name {name!r}: use 1-63 of a-z, 0-9 and -; give --name")
    offer = None
    if args.offer is not None:
        try:
            offer = parse_size(args.offer)
        except ValueError as exc:
            raise PeerFolderError(f"--offer {args.offer!r}: use a size like 500G") from exc
    if args.copies < 1:
        raise UsageError("--copies must be at least 1")
    role = "client-only" if args.client_only else "offer"
    paths = tuple(str(Path(p).resolve()) for p in args.path)
    settings = PeerSettings(name, role, offer, args.listen, paths, args.copies)
    PeerStore.create(folder, settings).close()
    fingerprint = init_server(folder, host, ctx.clock)
    shown = format_size(offer) if offer is not None else "none (client-only)"
    ctx.output.text(f"made peer {name} in {folder}; offers {shown} to each paired peer")
    ctx.output.text(f"certificate fingerprint (SHA-256): {fingerprint}")
    ctx.output.text(f"next: cairn peer serve --data {folder}, then cairn peer invite / join")
    ctx.output.json({"name": name, "role": role, "offer": offer, "fingerprint": fingerprint})
    return 0


def run_invite(ctx: Context) -> int:
    from cairn.peers.invitation import new_invitation, secret_hash
    from cairn.peers.peerserver import own_fingerprint
    from cairn.peers.store import PeerStore

    folder = _folder(ctx)
    store = PeerStore(folder)
    try:
        valid_s = parse_interval(ctx.args.valid)
    except ValueError as exc:
        raise UsageError(f"--valid {ctx.args.valid!r}: {exc}") from exc
    fingerprint = own_fingerprint(folder)
    invitation = new_invitation(store.settings().listen, fingerprint)
    now = epoch_ms(ctx.clock)
    expires = now + int(valid_s * 1000)
    store.add_invitation(secret_hash(invitation.secret), now, expires)
    code = invitation.code()
    ctx.output.text(code)
    ctx.output.text(f"valid once, until {_time(expires)}; this peer's fingerprint: {fingerprint}")
    ctx.output.json({"code": code, "expires_ms": expires, "fingerprint": fingerprint})
    return 0


def run_join(ctx: Context) -> int:
    from cairn.peers.pairing import join

    joined = join(_folder(ctx), ctx.args.code, ctx.clock)
    p = joined.peer
    ctx.output.text(f"paired with {p.name} at {p.address} ({p.role})")
    ctx.output.text(f"its certificate fingerprint (SHA-256): {p.fingerprint}")
    ctx.output.text(f"this peer's fingerprint (it now knows): {joined.own_fingerprint}")
    ctx.output.json(
        {
            "name": p.name,
            "address": p.address,
            "role": p.role,
            "offer": p.offer,
            "fingerprint": p.fingerprint,
            "own_fingerprint": joined.own_fingerprint,
        }
    )
    return 0


def run_list(ctx: Context) -> int:
    from cairn.peers.store import PeerStore

    peers = PeerStore(_folder(ctx)).peers()
    rows = [[p.name, p.role, p.address, _size(p.offer), p.fingerprint] for p in peers]
    ctx.output.table(["peer", "role", "address", "offers", "fingerprint"], rows)
    ctx.output.json(
        [
            {
                "name": p.name,
                "role": p.role,
                "address": p.address,
                "offer": p.offer,
                "fingerprint": p.fingerprint,
            }
            for p in peers
        ]
    )
    return 0


def run_forget(ctx: Context) -> int:
    from cairn.peers.peerserver import open_server, revoke_tenant_tokens
    from cairn.peers.store import PeerStore

    folder = _folder(ctx)
    peer = PeerStore(folder).remove_peer(ctx.args.name)
    revoked = 0
    if peer.tenant_here is not None:
        revoked = revoke_tenant_tokens(open_server(folder, ctx.clock), peer.tenant_here)
    ctx.output.text(
        f"forgot {peer.name}; {revoked} token(s) of its tenant here revoked, its data kept"
    )
    ctx.output.json({"name": peer.name, "revoked_tokens": revoked})
    return 0


def run_serve(ctx: Context) -> int:
    import logging
    import sys

    from cairn.peers.serve import serve
    from cairn.peers.store import PeerStore
    from cairn.server.errors import ListenFailed

    folder = _folder(ctx)
    settings = PeerStore(folder).settings()
    every = None
    if ctx.args.backup_every is not None:
        try:
            every = parse_interval(ctx.args.backup_every)
        except ValueError as exc:
            raise UsageError(f"--backup-every {ctx.args.backup_every!r}: {exc}") from exc
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    host, port = _listen(settings.listen)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(512)
    except OSError as exc:
        listener.close()
        raise ListenFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    with listener:
        ctx.output.text(f"peer {settings.name} serving at {settings.listen}")
        announce = not ctx.args.no_announce
        grace_s = _duration(ctx, "grace")
        serve(folder, listener, ctx.clock, _environ(ctx), every, announce, grace_s)
    return 0


def run_backup(ctx: Context) -> int:
    from cairn.peers.placement import back_up
    from cairn.peers.store import PeerStore

    store = PeerStore(_folder(ctx))
    paths = ctx.args.paths or list(store.settings().paths)
    if not paths:
        raise UsageError("no paths to back up: give them, or --path at `cairn peer init`")
    if ctx.args.copies is not None and ctx.args.copies < 1:
        raise UsageError("--copies must be at least 1")
    grace_s = _duration(ctx, "grace")
    result = back_up(store, paths, _environ(ctx), ctx.clock, ctx.args.copies, grace_s)
    for copy in result.copies:
        what = f"snapshot {copy.snapshot[:8]}" if copy.snapshot else f"failed: {copy.error}"
        ctx.output.text(f"{copy.peer}: {what}")
    ctx.output.text(f"{len(result.complete)} of {result.wanted} copies complete")
    ctx.output.json(
        {
            "run_ms": result.run_ms,
            "copies": [
                {"peer": c.peer, "snapshot_id": c.snapshot, "error": c.error} for c in result.copies
            ],
            "complete": len(result.complete),
            "wanted": result.wanted,
        }
    )
    return 0


def run_discover(ctx: Context) -> int:
    """Peers seen on the LAN and at the static addresses given: hints (design 20.6), each marked
    with whether its fingerprint is one this peer paired with."""
    from cairn.peers.discovery import browse, probe
    from cairn.peers.peerserver import own_fingerprint
    from cairn.peers.store import PeerStore

    folder = _folder(ctx)
    try:
        wait_s = parse_interval(ctx.args.wait)
    except ValueError as exc:
        raise UsageError(f"--wait {ctx.args.wait!r}: {exc}") from exc
    paired = {p.fingerprint: p.name for p in PeerStore(folder).peers()}
    mine = own_fingerprint(folder)
    seen = [s for s in browse(wait_s) if s.fingerprint != mine] + probe(ctx.args.peer)
    rows = []
    documents = []
    for s in seen:
        state = f"paired as {paired[s.fingerprint]}" if s.fingerprint in paired else "not paired"
        rows.append([s.name, s.address, s.role, _size(s.offer), _size(s.free), state, s.how])
        documents.append(
            {
                "name": s.name,
                "address": s.address,
                "fingerprint": s.fingerprint,
                "role": s.role,
                "offer": s.offer,
                "free": s.free,
                "paired_as": paired.get(s.fingerprint),
                "how": s.how,
            }
        )
    ctx.output.table(["peer", "address", "role", "offers", "free", "", "seen by"], rows)
    for s in seen:
        ctx.output.text(f"{s.name}: fingerprint {s.fingerprint} (a hint: pair with a code)")
    ctx.output.json(documents)
    return 0


def run_status(ctx: Context) -> int:
    from cairn.peers.status import peer_rows, protection
    from cairn.peers.store import PeerStore

    folder = _folder(ctx)
    store = PeerStore(folder)
    rows = peer_rows(store, ctx.clock)
    state = protection(store, ctx.clock, _duration(ctx, "alert-after"))
    table = [
        [
            r.peer.name,
            r.peer.role,
            _time(r.peer.last_seen_ms),
            _size(r.peer.offer),
            "-" if r.used_there is None else format_size(r.used_there),
            "-" if r.used_here is None else format_size(r.used_here),
        ]
        for r in rows
    ]
    ctx.output.table(["peer", "role", "last seen", "offers", "used there", "used here"], table)
    for r in rows:
        if r.error:
            ctx.output.text(f"{r.peer.name}: {r.error}")
    where = ", ".join(state.confirmed) or "nowhere"
    verdict = "protected" if state.protected else "NOT protected"
    ctx.output.text(
        f"this machine: {len(state.confirmed)} of {state.wanted} complete copies of its latest "
        f"backup ({where}): {verdict}"
    )
    for name, newest in state.degraded.items():
        ctx.output.text(f"  {name}: degraded, holds an older copy (of {_time(newest)})")
    for name, error in state.failed.items():
        if name not in state.degraded:
            ctx.output.text(f"  {name}: {error}")
    if state.alert:
        ctx.output.text(
            f"ALERT (CAIRN-E190): fewer than {state.wanted} complete copies since "
            f"{_time(state.unprotected_since_ms)}, longer than --alert-after "
            f"{ctx.args.alert_after}"
        )
    told: list[str] = []
    if ctx.args.notify is not None:
        from cairn.peers.alerting import tell

        me = store.settings().name
        told = [e.subject for e in tell(folder, Path(ctx.args.notify), me, state, ctx.clock)]
        for subject in told:
            ctx.output.text(f"told: {subject}")
    ctx.output.json(
        {"peers": [r.as_json() for r in rows], "this_machine": state.as_json(), "told": told}
    )
    return EXIT_ALERT if state.alert else 0


def run_restore(ctx: Context) -> int:
    from cairn.peers.placement import child_environment, run_cairn
    from cairn.peers.store import PeerStore

    folder = _folder(ctx)
    peer = PeerStore(folder).peer(ctx.args.source)
    if peer.location is None:
        raise PeerFolderError(f"{peer.name} holds no copy of this machine (it offers no space)")
    env = child_environment(folder, peer, _environ(ctx))
    args = ["restore", ctx.args.snapshot, "-t", ctx.args.target, "-r", peer.location]
    return run_cairn(args, env)


def _size(value: int | None) -> str:
    return "-" if value is None else format_size(value)


def _time(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
