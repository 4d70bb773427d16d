"""The hot standby in the CLI (design 19): `serve`'s pair options, which make the lease holder,
and `cairn server standby status|promote`, which act on the data folder of this machine."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from cairn.cli.context import Context, read_secret_file
from cairn.cli.serverdata import cli_actor, data_option, server_services, server_settings
from cairn.failover.epochfile import STATUS, EpochRecord, read_epoch, write_epoch
from cairn.failover.errors import StandbyUsage

if TYPE_CHECKING:
    from cairn.failover.holder import LeaseHolder
    from cairn.server.context import Services

DEFAULT_LEASE = "cairn"


def add_serve_options(serve: argparse.ArgumentParser) -> None:
    """`cairn server serve`'s options for running as one of a pair."""
    g = serve.add_argument_group("hot standby (design 19)")
    g.add_argument("--peer", metavar="HOST:PORT", help="the other server of the pair")
    g.add_argument(
        "--witness",
        metavar="URL",
        help="the witness that grants the lease: https://HOST:PORT#FINGERPRINT, as "
        "`cairn witness serve` prints it (without one, no automatic takeover)",
    )
    g.add_argument(
        "--witness-token-file",
        metavar="FILE",
        help="the witness's token (its data folder's `token` file; or CAIRN_WITNESS_TOKEN)",
    )
    g.add_argument(
        "--pin",
        choices=["primary", "standby"],
        help="primary: always campaign; standby: never campaign while the peer can lead",
    )
    g.add_argument(
        "--lease-ttl",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="the lease's length; renewed every third of it (default %(default)s)",
    )
    g.add_argument(
        "--lease",
        default=DEFAULT_LEASE,
        metavar="NAME",
        help="the lease's name at the witness, the same on both servers (default %(default)s)",
    )


def lease_holder(ctx: Context, services: Services) -> LeaseHolder | None:
    """The lease holder `serve`'s options ask for, or None for a server on its own."""
    args = ctx.args
    if args.peer is None and args.witness is None:
        if args.pin is not None:
            raise StandbyUsage("--pin applies to one of a pair: give --peer and --witness too")
        return None
    if args.pin is not None and args.witness is None:
        raise StandbyUsage("--pin needs --witness: without a witness only `promote --force` leads")
    if not 1.0 <= args.lease_ttl <= 3600.0:
        raise StandbyUsage("--lease-ttl must be between 1 and 3600 seconds")
    import logging

    from cairn.failover.client import WitnessClient, parse_witness_url
    from cairn.failover.holder import LeaseHolder, StandbySettings
    from cairn.failover.peer import peer_can_lead

    settings = StandbySettings(
        data=services.settings.data,
        holder=services.server_id,
        peer=args.peer,
        witness=args.witness.split("#")[0] if args.witness else None,
        pin=args.pin,
        ttl_s=args.lease_ttl,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per renewal is noise
    witness = None
    if args.witness is not None:
        url = parse_witness_url(args.witness)
        token = _witness_token(args.witness_token_file)
        timeout = max(1.0, args.lease_ttl / 4)
        witness = WitnessClient(url, token, args.lease, services.server_id, ctx.clock, timeout)
    peer = args.peer
    return LeaseHolder(
        settings,
        witness,
        ctx.clock,
        peer_can_lead=(lambda: peer_can_lead(peer)) if peer else (lambda: False),
    )


def _witness_token(file: str | None) -> str:
    if file is not None:
        token = read_secret_file(file, "witness token file").decode(errors="replace").strip()
    else:
        token = os.environ.get("CAIRN_WITNESS_TOKEN", "").strip()
    if not token:
        raise StandbyUsage(
            "give the witness's token: --witness-token-file FILE or CAIRN_WITNESS_TOKEN"
        )
    return token


def register(actions: Any, shared: argparse.ArgumentParser) -> None:
    """`cairn server standby ACTION`, under `cairn server`'s actions."""
    standby = actions.add_parser("standby", parents=[shared], help="the hot standby (design 19)")
    sub = standby.add_subparsers(dest="standby_command", metavar="ACTION", required=True)
    status = sub.add_parser("status", parents=[shared], help="role, epoch, lease, peer, witness")
    data_option(status)
    status.set_defaults(run=run_status)
    promote = sub.add_parser(
        "promote", parents=[shared], help="make this server primary by hand (no witness)"
    )
    data_option(promote)
    promote.add_argument(
        "--force", action="store_true", help="required: you make sure the peer is not primary"
    )
    promote.set_defaults(run=run_promote)


def run_status(ctx: Context) -> int:
    import json

    settings = server_settings(ctx)
    server_services(ctx)  # a mistyped --data is refused like everywhere else
    path = settings.data / STATUS
    try:
        status = json.loads(path.read_text())
    except FileNotFoundError:
        raise StandbyUsage(
            f"{settings.data} has never run as one of a pair (no {STATUS}): serve it with "
            "--peer and --witness"
        ) from None
    except (OSError, ValueError) as exc:
        raise StandbyUsage(f"cannot read {path}: {exc}") from exc
    running = _alive(int(status.get("pid", 0)))
    status["running"] = running
    if not running:
        status["role"] = "stopped"
    for key in (
        "role",
        "epoch",
        "lease_age_s",
        "deadline_in_s",
        "peer",
        "witness",
        "witness_reachable",
        "pin",
        "refused_stale_epoch",
        "refused_not_primary",
        "last_event",
    ):
        ctx.output.text(f"{key.replace('_', ' ')}: {status.get(key)}")
    if not running:
        ctx.output.text("(the server is not running: this is what it last wrote)")
    ctx.output.json(status)
    return 0


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_promote(ctx: Context) -> int:
    """Bump the epoch by hand, loudly, and record who did it in the audit log (design 19.5)."""
    if not ctx.args.force:
        raise StandbyUsage(
            "`standby promote` makes this server primary without a witness: if the peer is "
            "primary too, both accept backups. Make sure it is not, then add --force"
        )
    services = server_services(ctx)
    data = services.settings.data
    status_file = data / STATUS
    if status_file.exists():
        import json

        last = json.loads(status_file.read_text())
        if last.get("witness") and _alive(int(last.get("pid", 0))):
            raise StandbyUsage(
                f"the server on {data} runs with the witness {last['witness']}: the witness "
                "decides who leads; stop the server, or serve it without --witness"
            )
    before = read_epoch(data)
    after = EpochRecord(before.epoch + 1, forced=True)
    services.audit.append(
        cli_actor().name,
        None,
        "standby promote --force",
        f"epoch {before.epoch} -> {after.epoch}",
        "ok",
        "-",
    )
    services.audit.write_through()
    write_epoch(data, after)
    print(
        f"WARNING: {data} is now primary by hand at epoch {after.epoch} (was {before.epoch}); "
        "no witness checks that the peer is not primary too. Recorded in the audit log.",
        file=sys.stderr,
    )
    ctx.output.text(f"promoted: epoch {after.epoch}")
    ctx.output.json({"epoch": after.epoch, "previous": before.epoch, "forced": True})
    return 0
