"""Run wsgidav (the real WebDAV server) as its own process, for the tests.

``python tests/webdavd.py ROOT PORTFILE [--port N] [--auth digest|basic] [--user U --password P]
[--cert PEM --key PEM]`` serves ROOT on 127.0.0.1 (port 0: any free one) and writes the port it
listens on to PORTFILE once it accepts connections. Run by tests/storageservers.py; not imported by
the tests, so the server never shares their process.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.middleware.wsgi import WSGIMiddleware  # type: ignore[attr-defined]
from wsgidav.wsgidav_app import WsgiDAVApp  # type: ignore[import-untyped]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("portfile", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--auth", choices=("digest", "basic"), default="digest")
    parser.add_argument("--user", default="cairn")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    config: dict[str, Any] = {
        "provider_mapping": {"/": str(args.root)},
        "http_authenticator": {
            "domain_controller": None,
            "accept_basic": True,
            "accept_digest": args.auth == "digest",
            "default_to_digest": args.auth == "digest",
        },
        "simple_dc": {"user_mapping": {"*": {args.user: {"password": args.password}}}},
        "verbose": 1,
        "logging": {"enable_loggers": []},
        "dir_browser": {"enable": False},
        "lock_storage": True,
    }
    app = WsgiDAVApp(config)
    port = args.port or _free_port()
    # uvicorn (the server's own HTTP runner) carries wsgidav: cheroot's built-in TLS adapter
    # garbles records when connections are used from many threads at once (cheroot#292), which
    # made the concurrent conformance tests fail for the server's fault, not the client's.
    server = uvicorn.Server(
        uvicorn.Config(
            WSGIMiddleware(app, workers=16),
            host="127.0.0.1",
            port=port,
            ssl_certfile=args.cert,
            ssl_keyfile=args.key,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=30,
        )
    )
    announced = False

    async def serve() -> None:
        nonlocal announced
        task = asyncio.ensure_future(server.serve())
        while not server.started:
            if task.done():
                await task
                return
            await asyncio.sleep(0.02)
        temp = args.portfile.with_suffix(".tmp")
        temp.write_text(str(port))
        temp.rename(args.portfile)
        announced = True
        await task

    asyncio.run(serve())
    sys.exit(0 if announced else 1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
