"""`cairn peer serve` (design 20.1): the peer's server, with the pairing route added, and this
machine's own backup job on a timer beside it, in one long-running process."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from cairn.core.clock import Clock
from cairn.core.errors import CairnError
from cairn.peers.discovery import announced, free_space
from cairn.peers.pairing import hello_route, join_route
from cairn.peers.peerserver import certificate, open_server, own_fingerprint, server_folder
from cairn.peers.placement import DEFAULT_GRACE_S, back_up
from cairn.peers.store import PeerStore

log = logging.getLogger("cairn.peers")


def serve(
    folder: Path,
    listener: socket.socket,
    clock: Clock,
    environ: Mapping[str, str],
    backup_every_s: float | None = None,
    announce: bool = True,
    grace_s: float = DEFAULT_GRACE_S,
) -> None:
    """Serve until stopped (SIGTERM or SIGINT, as uvicorn handles them); with `announce`, the
    peer is announced on the LAN by mDNS meanwhile (a hint for others, 20.6)."""
    import uvicorn  # the server's own dependency: only `peer serve` loads it

    from cairn.server.app import create_app

    services = open_server(folder, clock)
    for tenant in services.tenants.all():
        services.tenants.recount(tenant)
    app = create_app(services)
    app.router.routes.insert(0, join_route(folder, services, clock))
    app.router.routes.insert(0, hello_route(folder))
    cert, key = certificate(folder)
    stop = threading.Event()
    if backup_every_s is not None:
        job = threading.Thread(
            target=_backups,
            args=(folder, environ, clock, backup_every_s, stop, grace_s),
            name="peer-backups",
            daemon=True,
        )
        job.start()
    config = uvicorn.Config(
        app,
        log_level="warning",
        timeout_keep_alive=30,
        limit_concurrency=512,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
    )
    store = PeerStore(folder)
    me = store.settings()
    store.close()
    host, port = listener.getsockname()[:2]
    announcement = (
        announced(
            me.name,
            host,
            port,
            own_fingerprint(folder),
            me.role,
            me.offer,
            free_space(server_folder(folder)),
        )
        if announce
        else contextlib.nullcontext()
    )
    try:
        with announcement:
            uvicorn.Server(config).run(sockets=[listener])
    finally:
        stop.set()


def _backups(
    folder: Path,
    environ: Mapping[str, str],
    clock: Clock,
    every_s: float,
    stop: threading.Event,
    grace_s: float = DEFAULT_GRACE_S,
    run: Callable[..., object] = back_up,
) -> None:
    """The machine's own backup job: a run now, then one every `every_s`; a failed run is
    logged (its copies and errors are in the peer database, for `peer status`)."""
    while not stop.is_set():
        store = PeerStore(folder)
        try:
            run(store, store.settings().paths, environ, clock, grace_s=grace_s)
            log.info("backup run complete")
        except CairnError as exc:
            log.warning("backup run: %s", exc)
        finally:
            store.close()
        stop.wait(every_s)
