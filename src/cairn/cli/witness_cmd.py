"""cairn witness: the small service that grants a pair's lease (design 19.3).

`init` makes its data folder, token and certificate and prints what both servers need (the URL
with the certificate's fingerprint, and the token file); `serve` does the same when missing and
then serves. The certificate is made like the server's (cairn.server.tls).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from cairn.cli.context import Context
from cairn.cli.errors import UsageError
from cairn.cli.server_cmd import _bound, _listen
from cairn.cli.serverdata import server_options
from cairn.failover.errors import WitnessSetupError

DEFAULT_LISTEN = "127.0.0.1:8444"
TOKEN = "token"  # noqa: S105 (the token file's name in the data folder: failover.witness.TOKEN)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    del common  # the client's options do not apply to the witness
    shared = server_options()
    p = sub.add_parser("witness", parents=[shared], help="run the lease witness of a server pair")
    actions = p.add_subparsers(dest="witness_command", metavar="ACTION", required=True)
    init = actions.add_parser("init", parents=[shared], help="make a data folder and token")
    init.add_argument("--data", required=True, help="the witness's data folder")
    init.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name or address the servers use (repeatable)",
    )
    init.set_defaults(run=run_init)
    serve = actions.add_parser("serve", parents=[shared], help="run the witness")
    serve.add_argument("--data", required=True, help="the witness's data folder")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    serve.set_defaults(run=run_serve)


def run_init(ctx: Context) -> int:
    from cairn.failover.witness import init_witness  # Starlette: loaded by the witness alone

    data = Path(ctx.args.data).expanduser().resolve()
    made = init_witness(data)
    fingerprint = _certificate(data, ctx.args.name, ctx)
    ctx.output.text(("made" if made else "already") + f" a witness data folder at {data}")
    ctx.output.text(f"token file (give it to both servers): {data / TOKEN}")
    ctx.output.text(f"certificate fingerprint (SHA-256): {fingerprint}")
    ctx.output.json(
        {
            "data": str(data),
            "created": made,
            "fingerprint": fingerprint,
            "token_file": str(data / TOKEN),
        }
    )
    return 0


def run_serve(ctx: Context) -> int:
    """Bind first (E076 before anything is written), then make what is missing, then serve."""
    import uvicorn

    from cairn.failover.witness import create_witness_app, init_witness  # see run_init

    data = Path(ctx.args.data).expanduser().resolve()
    host, port = _listen(ctx.args.listen)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with _bound(host, port) as listener:
        if init_witness(data):
            ctx.output.text(f"made a witness data folder at {data}")
        fingerprint = _certificate(data, [host], ctx)
        shown_host, shown_port = listener.getsockname()[:2]
        shown = f"[{shown_host}]" if ":" in shown_host else shown_host
        ctx.output.text(f"token file (give it to both servers): {data / TOKEN}")
        ctx.output.text(f"witness URL: https://{shown}:{shown_port}#{fingerprint}")
        sys.stdout.flush()
        app = create_witness_app(data, ctx.clock)
        config = uvicorn.Config(
            app,
            log_level="warning",
            ssl_certfile=str(data / "tls" / "cert.pem"),
            ssl_keyfile=str(data / "tls" / "key.pem"),
        )
        uvicorn.Server(config).run(sockets=[listener])
    return 0


def _certificate(data: Path, hosts: list[str], ctx: Context) -> str:
    from cairn.server.tls import ensure_self_signed, fingerprint  # cryptography: loaded here only

    folder = data / "tls"
    try:
        cert, key, _made = ensure_self_signed(folder, hosts, ctx.clock)
    except OSError as exc:
        raise WitnessSetupError(f"cannot make {folder}: {exc}") from exc
    if not key.exists():
        raise UsageError(f"{cert} has no key beside it ({key})")
    return fingerprint(cert)
