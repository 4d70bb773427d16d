"""The audit log as a page (design 18.4): newest first, filtered by tenant and by kind (the
entry's action), 50 to a page with a link to older ones (a cursor on the sequence number, so a
page does not shift while entries arrive). A tenant admin sees only their tenant's entries;
the server's roles also see the chain verified on the page (`AuditLog.verify`, 14.14)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from cairn.server.context import Services
from cairn.server.errors import ServerError
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.dashboard import show_time

PER_PAGE = 50
FILTER_LIMIT = 100


class BadAuditQuery(ServerError):
    """The audit page's address holds a filter it cannot read (a page cursor that is not a
    number, or a filter longer than any name)."""

    status, code = 400, "CAIRN-E156"


@dataclass(frozen=True, slots=True)
class AuditQuery:
    tenant: str | None
    kind: str | None
    before: int | None
    verify: bool = False
    """Verify the chain: asked for with a button, since it reads every entry (about 3 s for
    200,000 entries, measured)."""


@dataclass(frozen=True, slots=True)
class Chain:
    count: int
    """Entries found intact."""
    broken: int | None
    """The sequence number of the first broken entry."""

    @property
    def intact(self) -> bool:
        return self.broken is None


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    tenant: str
    kind: str
    target: str
    outcome: str
    address: str
    failed: bool


@dataclass(frozen=True, slots=True)
class AuditPage:
    query: AuditQuery
    rows: list[AuditRow]
    older: str | None
    """The query string of the next page, or None on the last."""
    tenants: list[str] | None
    """The tenant filter's choices; None for a tenant admin (theirs only)."""
    kinds: list[str]
    chain: Chain | None
    """None when not asked for."""
    may_verify: bool
    """False for a tenant admin: the chain covers every tenant."""


def read_query(params: Any, user: ConsoleUser) -> AuditQuery:
    """The filters in the page's address; a tenant admin's tenant is always theirs."""
    tenant = params.get("tenant") or None
    kind = params.get("kind") or None
    before = params.get("before") or None
    for value in (tenant, kind, before):
        if value is not None and len(value) > FILTER_LIMIT:
            raise BadAuditQuery("a filter is longer than any name")
    if before is not None and not before.isdigit():
        raise BadAuditQuery("the page cursor 'before' must be a whole number")
    if user.role is ConsoleRole.TENANT_ADMIN:
        tenant = user.tenant
    verify = params.get("verify") == "1" and user.role is not ConsoleRole.TENANT_ADMIN
    return AuditQuery(tenant, kind, None if before is None else int(before), verify)


def gather_audit(services: Services, user: ConsoleUser, query: AuditQuery) -> AuditPage:
    audit = services.audit
    found = audit.page(query.tenant, query.kind, query.before, PER_PAGE + 1)
    rows = [
        AuditRow(
            seq,
            show_time(e.at_ms, seconds=True),
            e.actor,
            e.tenant or "—",
            e.action,
            e.target,
            e.outcome,
            e.address,
            e.outcome != "ok",
        )
        for seq, e in found[:PER_PAGE]
    ]
    older = None
    if len(found) > PER_PAGE:
        older = _query_string(query, rows[-1].seq)
    server_role = user.role is not ConsoleRole.TENANT_ADMIN
    return AuditPage(
        query,
        rows,
        older,
        [t.name for t in services.tenants.all()] if server_role else None,
        audit.actions(),
        _chain(services) if query.verify else None,
        server_role,
    )


def _query_string(query: AuditQuery, before: int) -> str:
    pairs = {"tenant": query.tenant or "", "kind": query.kind or "", "before": str(before)}
    return urlencode({k: v for k, v in pairs.items() if v})


def _chain(services: Services) -> Chain:
    return Chain(*services.audit.verify())
