"""The witness service (`cairn witness serve`, design 19.3): leases over HTTPS with a token.

A data folder holds `witness.db` (the leases), `token` (the bearer token its clients send, 0600)
and `tls/` (the self-signed certificate the CLI makes, as the server's). The routes answer JSON;
a refusal is `{"error": {"code", "message", ...}}` with the code of docs/errors.md.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cairn.core.clock import Clock
from cairn.core.throttle import FailureThrottle
from cairn.failover.errors import LeaseHeld, WitnessRequestBad, WitnessSetupError
from cairn.failover.leases import LeaseTable

DATABASE = "witness.db"
TOKEN = "token"  # noqa: S105 (a file name)


def init_witness(data: Path) -> bool:
    """Make `data` a witness's data folder (0700) with a new token (0600); False if it was one."""
    token_file = data / TOKEN
    if token_file.is_file():
        return False
    try:
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"cairnw_{secrets.token_hex(32)}\n")
    except OSError as exc:
        raise WitnessSetupError(f"cannot use {data} as the witness's data folder: {exc}") from exc
    return True


def read_token(data: Path) -> str:
    try:
        return (data / TOKEN).read_text().strip()
    except OSError as exc:
        raise WitnessSetupError(
            f"{data} is not a witness's data folder ({exc}): `cairn witness init --data {data}`"
        ) from exc


def create_witness_app(data: Path, clock: Clock) -> Starlette:
    """The witness's ASGI app over the leases in `data`."""
    token = read_token(data)
    table = LeaseTable(data / DATABASE, clock)
    throttle = FailureThrottle(clock=clock.monotonic)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "role": "witness"})

    async def lease(request: Request) -> Response:
        return await _answer(
            request, token, throttle, lambda body, name: table.read(name), read=True
        )

    async def acquire(request: Request) -> Response:
        return await _answer(
            request,
            token,
            throttle,
            lambda body, name: table.acquire(name, _text(body, "holder"), _number(body, "ttl_s")),
        )

    async def renew(request: Request) -> Response:
        return await _answer(
            request,
            token,
            throttle,
            lambda body, name: table.renew(
                name, _text(body, "holder"), int(_number(body, "epoch")), _number(body, "ttl_s")
            ),
        )

    async def release(request: Request) -> Response:
        return await _answer(
            request,
            token,
            throttle,
            lambda body, name: table.release(
                name, _text(body, "holder"), int(_number(body, "epoch"))
            ),
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            table.close()

    lease_path = "/v1/leases/{name}"
    app = Starlette(
        routes=[
            Route("/v1/health", health, methods=["GET"]),
            Route(lease_path, lease, methods=["GET"]),
            Route(lease_path + "/acquire", acquire, methods=["POST"]),
            Route(lease_path + "/renew", renew, methods=["POST"]),
            Route(lease_path + "/release", release, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    return app


async def _answer(
    request: Request, token: str, throttle: FailureThrottle, act: Any, read: bool = False
) -> Response:
    if not _authorised(request, token):
        return _wrong_token(request, throttle)
    try:
        body = {} if read else json.loads(await request.body() or b"{}")
        if not isinstance(body, dict):
            raise WitnessRequestBad("the body must be a JSON object")
        lease = await run_in_threadpool(act, body, request.path_params["name"])
    except LeaseHeld as exc:
        return _refusal(409, "CAIRN-E161", str(exc), holder=exc.holder, epoch=exc.epoch)
    except (WitnessRequestBad, ValueError) as exc:
        return _refusal(400, "CAIRN-E167", str(exc))
    return JSONResponse(lease.as_json())


def _wrong_token(request: Request, throttle: FailureThrottle) -> Response:
    """401 (E162), or past 10 wrong tokens a minute from the address 429 (E064) with
    Retry-After. Only wrong tokens are throttled: the right one is always answered, so no one
    sharing the pair's address can lock the pair out of its lease (design 19.3)."""
    address = request.client.host if request.client is not None else "-"
    wait = throttle.wait_s(address)
    if wait is not None:
        message = "too many wrong tokens from this address; wait before trying again"
        response = _refusal(429, "CAIRN-E064", message, retry_after=wait)
        response.headers["retry-after"] = str(wait)
        return response
    throttle.failed(address)
    return _refusal(401, "CAIRN-E162", "the witness does not know this token")


def _authorised(request: Request, token: str) -> bool:
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent.strip(), token)


def _refusal(status: int, code: str, message: str, **details: Any) -> Response:
    return JSONResponse({"error": {"code": code, "message": message, **details}}, status)


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise WitnessRequestBad(f"{key} must be a string")
    return value


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WitnessRequestBad(f"{key} must be a number")
    return float(value)
