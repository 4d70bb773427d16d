"""Run wsgidav (the real WebDAV server, on cheroot) as its own process, for the tests.

``python tests/webdavd.py ROOT PORTFILE [--port N] [--auth digest|basic] [--user U --password P]
[--cert PEM --key PEM]`` serves ROOT on 127.0.0.1 (port 0: any free one) and writes the port it
listens on to PORTFILE once it accepts connections. Run by tests/storageservers.py; not imported by
the tests, so the server never shares their process.
"""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter
from wsgidav.wsgidav_app import WsgiDAVApp


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
    # A restart binds the port again while the old connections linger (TIME_WAIT), which
    # needs SO_REUSEPORT on every socket bound to it, and cheroot sets that for a given port only.
    port = args.port or _free_port()
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=16, reuse_port=True)
    if args.cert:
        server.ssl_adapter = BuiltinSSLAdapter(args.cert, args.key)
    server.prepare()
    port = server.bind_addr[1]
    temp = args.portfile.with_suffix(".tmp")
    temp.write_text(str(port))
    temp.rename(args.portfile)
    try:
        server.serve()
    finally:
        server.stop()
    sys.exit(0)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
