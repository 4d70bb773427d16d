"""The console's pages: each handler reads what it needs and renders a Jinja2 template with
autoescaping on, so a tenant, host or job name with markup is shown as text (design 18.3)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from cairn.server.context import Services
from cairn.server.errors import Throttled
from cairn.server.users import ConsoleUser
from cairn.web.alertspage import gather_alerts
from cairn.web.auditpage import BadAuditQuery, gather_audit, read_query
from cairn.web.dashboard import gather
from cairn.web.i18n import CODES, ENVIRONMENTS, LANGUAGES, ONE_YEAR_S, SIGN_IN_REFUSED
from cairn.web.i18n import COOKIE as LANGUAGE_COOKIE
from cairn.web.sessions import COOKIE, SIGNED_IN_S, Session, SessionStore
from cairn.web.tenantpage import NoSuchTenantPage, gather_tenant

LANGUAGE: ContextVar[str] = ContextVar("console_language", default="en")
"""The language of the request being answered, set by the guard (web/i18n.py)."""


@dataclass(frozen=True, slots=True)
class Visit:
    """One request to the console: the session (signed in or not) and the parsed form."""

    request: Request
    services: Services
    sessions: SessionStore
    session: Session | None
    form: dict[str, str]
    address: str


def render(template: str, status: int = 200, **values: Any) -> HTMLResponse:
    lang = LANGUAGE.get()
    page = ENVIRONMENTS[lang].get_template(template)
    return HTMLResponse(page.render(lang=lang, languages=LANGUAGES, **values), status_code=status)


def refusal(message: str, status: int, **values: Any) -> HTMLResponse:
    return render("refusal.html", status=status, message=message, **values)


async def style(visit: Visit) -> Response:
    css = resources.files("cairn.web").joinpath("templates/console.css").read_text()
    return Response(css, media_type="text/css")


async def dashboard(visit: Visit) -> Response:
    session, user = _signed_in(visit)
    board = await run_in_threadpool(gather, visit.services, user)
    return render("dashboard.html", user=user, board=board, csrf=session.csrf)


async def tenant(visit: Visit) -> Response:
    session, user = _signed_in(visit)
    name = str(visit.request.path_params["name"])
    try:
        page = await run_in_threadpool(gather_tenant, visit.services, user, name)
    except NoSuchTenantPage as exc:
        return refusal(f"{exc.code}: {exc}", exc.status, user=user, csrf=session.csrf)
    return render("tenant.html", user=user, page=page, csrf=session.csrf)


async def audit(visit: Visit) -> Response:
    session, user = _signed_in(visit)
    try:
        query = read_query(visit.request.query_params, user)
    except BadAuditQuery as exc:
        return refusal(f"{exc.code}: {exc}", exc.status, user=user, csrf=session.csrf)
    page = await run_in_threadpool(gather_audit, visit.services, user, query)
    first = urlencode({k: v for k, v in (("tenant", query.tenant), ("kind", query.kind)) if v})
    return render("audit.html", user=user, page=page, first=first, csrf=session.csrf)


async def alerts(visit: Visit) -> Response:
    session, user = _signed_in(visit)
    found = await run_in_threadpool(gather_alerts, visit.services, user)
    return render("alerts.html", user=user, alerts=found, csrf=session.csrf)


async def language(visit: Visit) -> Response:
    """The language switch: a cookie for a year, then back to the console (a choice of
    language changes nothing on the server, so it needs no form and no token)."""
    response = RedirectResponse("/console/", status_code=303)
    chosen = visit.request.query_params.get("to")
    if chosen in CODES:
        response.set_cookie(
            LANGUAGE_COOKIE,
            str(chosen),
            max_age=ONE_YEAR_S,
            path="/console/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
    return response


async def sign_in_form(visit: Visit) -> Response:
    session = visit.session
    if session is not None and session.user is not None:
        return RedirectResponse("/console/", status_code=303)
    if session is None:
        session = await run_in_threadpool(visit.sessions.start, None)
    return _with_cookie(render("sign_in.html", csrf=session.csrf), session)


async def sign_in(visit: Visit) -> Response:
    """Check the name and password (throttled per address with the tokens' throttle, 14.3);
    on success a new session replaces the anonymous one, so its ID is one no one saw before."""
    assert visit.session is not None  # the CSRF check needs one
    services, name = visit.services, visit.form.get("name", "")[:100]
    try:
        services.throttle.check(visit.address)
    except Throttled as exc:
        return render("sign_in.html", status=429, error=str(exc), csrf=visit.session.csrf)
    user = await run_in_threadpool(
        services.admin.users.verify, name, visit.form.get("password", "")[:1024]
    )
    outcome = "ok" if user is not None else "CAIRN-E153"
    services.audit.append(f"console:{name}", None, "console-sign-in", name, outcome, visit.address)
    await run_in_threadpool(services.audit.write_through)
    if user is None:
        services.throttle.failed(visit.address)
        error = SIGN_IN_REFUSED
        return render("sign_in.html", status=401, error=error, csrf=visit.session.csrf)
    await run_in_threadpool(visit.sessions.end, visit.session.id)
    session = await run_in_threadpool(visit.sessions.start, user)
    return _with_cookie(RedirectResponse("/console/", status_code=303), session)


async def sign_out(visit: Visit) -> Response:
    session, user = _signed_in(visit)
    await run_in_threadpool(visit.sessions.end, session.id)
    name = user.name
    visit.services.audit.append(
        f"console:{name}", None, "console-sign-out", name, "ok", visit.address
    )
    await run_in_threadpool(visit.services.audit.write_through)
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console/", secure=True, httponly=True, samesite="strict")
    return response


def _signed_in(visit: Visit) -> tuple[Session, ConsoleUser]:
    """The session and user of a route only signed-in users reach (the guard saw to it)."""
    session = visit.session
    if session is None or session.user is None:
        raise RuntimeError("a signed-in route reached without a signed-in session")
    return session, session.user


def _with_cookie(response: Response, session: Session) -> Response:
    response.set_cookie(
        COOKIE,
        session.id,
        max_age=SIGNED_IN_S if session.user is not None else None,
        path="/console/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response
