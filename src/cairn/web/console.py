"""The console's route table and its guard (design 18.2-18.3).

Every console route names who may call it, as the server's own table does (server/routes.py):
`ANYONE` (the sign-in page and the style sheet) or a set of console roles. The guard, before any
handler runs: refuses to open anything but a set-up page while no server admin exists; sends a
browser without a signed-in session to the sign-in page; refuses a role the route does not name
(403); refuses a POST whose form does not carry the session's CSRF token (403, CAIRN-E154); and
puts the security headers on every answer (no framing, a strict CSP, no caching).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cairn.server.context import Services
from cairn.server.users import ConsoleRole
from cairn.web import pages
from cairn.web.i18n import COOKIE as LANGUAGE_COOKIE
from cairn.web.i18n import FORGED_FORM, FORM_TOO_LARGE, ROLE_REFUSED, language_of
from cairn.web.sessions import COOKIE, SessionStore

MAX_FORM = 16 * 1024
"""Bytes: a console form is a few fields; anything larger is refused before it is parsed."""
HEADERS = {
    "x-frame-options": "DENY",
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}
EVERY_ROLE = frozenset(ConsoleRole)
UNGUARDED = frozenset({"/console/console.css", "/console/language"})
"""Open even before an admin exists: the set-up page needs its style and its language."""


Handler = Callable[[pages.Visit], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ConsoleRoute:
    method: str
    path: str
    handler: Handler
    roles: frozenset[ConsoleRole] | None
    """None: anyone, signed in or not."""
    summary: str


ANYONE = None

CONSOLE_ROUTES: tuple[ConsoleRoute, ...] = (
    ConsoleRoute("GET", "/console/", pages.dashboard, EVERY_ROLE, "the dashboard"),
    ConsoleRoute(
        "GET",
        "/console/tenants/{name}",
        pages.tenant,
        EVERY_ROLE,
        "a tenant (a tenant admin: its own)",
    ),
    ConsoleRoute("GET", "/console/alerts", pages.alerts, EVERY_ROLE, "what needs a look now"),
    ConsoleRoute(
        "GET", "/console/audit", pages.audit, EVERY_ROLE, "the audit log (a tenant admin: theirs)"
    ),
    ConsoleRoute("GET", "/console/sign-in", pages.sign_in_form, ANYONE, "the sign-in form"),
    ConsoleRoute("POST", "/console/sign-in", pages.sign_in, ANYONE, "sign in"),
    ConsoleRoute("POST", "/console/sign-out", pages.sign_out, EVERY_ROLE, "sign out"),
    ConsoleRoute("GET", "/console/console.css", pages.style, ANYONE, "the style sheet"),
    ConsoleRoute("GET", "/console/language", pages.language, ANYONE, "choose the language"),
)


def mount_console(app: Starlette, services: Services) -> Starlette:
    """Add the console's routes to the server's app (the CLI's serve composes the two)."""
    sessions = SessionStore(services.db, services.admin.users, services.clock)
    for spec in CONSOLE_ROUTES:
        app.router.routes.append(
            Route(spec.path, console_guard(spec, services, sessions), methods=[spec.method])
        )
    return app


def console_guard(
    spec: ConsoleRoute, services: Services, sessions: SessionStore
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        response = await _answer(spec, services, sessions, request)
        response.headers.update(HEADERS)
        return response

    return endpoint


async def _answer(
    spec: ConsoleRoute, services: Services, sessions: SessionStore, request: Request
) -> Response:
    pages.LANGUAGE.set(
        language_of(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("accept-language"))
    )
    if spec.path not in UNGUARDED and not await run_in_threadpool(services.admin.users.has_admin):
        return pages.render("setup.html", status=503)
    session = await run_in_threadpool(sessions.find, request.cookies.get(COOKIE))
    address = request.client.host if request.client is not None else "-"
    if spec.roles is not ANYONE:
        if session is None or session.user is None:
            return RedirectResponse("/console/sign-in", status_code=303)
        if session.user.role not in spec.roles:
            return pages.refusal(ROLE_REFUSED, 403)
    form: dict[str, str] = {}
    if spec.method == "POST":
        body = await request.body()
        if len(body) > MAX_FORM:
            return pages.refusal(FORM_TOO_LARGE, 413)
        parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=20)
        form = {k: v[0] for k, v in parsed.items()}
        if session is None or not session.csrf_matches(form.get("csrf")):
            services.audit.append("-", None, "console-csrf", spec.path, "CAIRN-E154", address)
            await run_in_threadpool(services.audit.write_through)
            return pages.refusal(FORGED_FORM, 403)
    return await spec.handler(pages.Visit(request, services, sessions, session, form, address))
