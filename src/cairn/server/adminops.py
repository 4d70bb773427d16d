"""The server's admin operations: the one place that changes tenants, tokens, quotas,
retention policies, replication targets and console users, each with its audit record.

The admin API (server/admin.py), the admin CLI (`cairn server tenant|token|retention …`) and
the coming console are thin callers of this module: they parse and present, it changes. Each
operation makes its change and writes its audit record in one database transaction, so a change
without its record cannot be committed (a full disk refuses both) and a record cannot claim a
change that was rolled back. Whoever asks is an `Actor`: the token ID for the API,
``cli:<unix user>`` for the CLI.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cairn.backends.base import Handle, ObjectKind
from cairn.backends.errors import NotFound
from cairn.replication.model import AuditReport, RunReport, Target
from cairn.replication.scheduler import describe_audit
from cairn.replication.targets import TargetStore
from cairn.server.audit import AuditLog
from cairn.server.auth import IssuedToken, Role, TokenStore
from cairn.server.copysenders import MovedObject
from cairn.server.db import Database
from cairn.server.retention import ServerPolicy
from cairn.server.state import ServerState
from cairn.server.tenants import Tenant, TenantStore
from cairn.server.users import ConsoleUser, UserStore

FIRST_LABEL = "made with the tenant"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an admin operation, as the audit log records it."""

    name: str
    address: str = "-"


class AdminOps:
    """Audited changes to tenants, tokens, quotas and retention (see the module docstring)."""

    def __init__(
        self,
        db: Database,
        tenants: TenantStore,
        tokens: TokenStore,
        audit: AuditLog,
        state: ServerState,
        targets: TargetStore,
        users: UserStore | None = None,
    ) -> None:
        self._db = db
        self.users = UserStore(db) if users is None else users
        self._targets = targets
        self._state = state
        self._tenants = tenants
        self._tokens = tokens
        self._audit = audit

    def create_tenant(
        self, actor: Actor, name: str, quota: int | None
    ) -> tuple[Tenant, IssuedToken]:
        """A new tenant and its first tenant-admin token (shown once, by the caller)."""
        with self._db.write() as conn:
            tenant = self._tenants.create(name, quota)
            token = self._tokens.issue(Role.TENANT_ADMIN, tenant.name, FIRST_LABEL)
            self._record(conn, actor, name, "create-tenant", f"{name} quota={quota}")
            self._record(conn, actor, name, "create-token", f"{Role.TENANT_ADMIN.value} {token.id}")
        return tenant, token

    def set_quota(self, actor: Actor, name: str, quota: int | None) -> None:
        with self._db.write() as conn:
            self._tenants.set_quota(name, quota)
            self._record(conn, actor, name, "set-quota", f"{name} {quota}")

    def set_retention(self, actor: Actor, name: str, policy: ServerPolicy | None) -> None:
        with self._db.write() as conn:
            self._tenants.set_retention(name, policy)
            shown = policy.describe() if policy is not None else "none"
            self._record(conn, actor, name, "set-retention", f"{name} {shown}")

    def issue_token(
        self,
        actor: Actor,
        role: Role,
        tenant: str | None,
        label: str = "",
        expires_ms: int | None = None,
    ) -> IssuedToken:
        with self._db.write() as conn:
            token = self._tokens.issue(role, tenant, label, expires_ms)
            target = f"{tenant or '-'} {role.value} {token.id}"
            self._record(conn, actor, tenant, "create-token", target)
        return token

    def add_user(self, actor: Actor, user: ConsoleUser, password: str) -> ConsoleUser:
        """A console user (design 18.1); the record names the user and role, never the hash."""
        with self._db.write() as conn:
            made = self.users.add(conn, user, password)
            self._record(conn, actor, user.tenant, "add-user", f"{user.name} {user.role.value}")
        return made

    def remove_user(self, actor: Actor, name: str) -> None:
        with self._db.write() as conn:
            self.users.remove(conn, name)
            self._record(conn, actor, None, "remove-user", name)

    def revoke_token(self, actor: Actor, token_id: str) -> None:
        with self._db.write() as conn:
            self._tokens.revoke(token_id)
            self._record(conn, actor, None, "revoke-token", token_id)

    def export_state(self, actor: Actor) -> dict[str, Any]:
        """The server's whole state (design 14.15); the export is recorded first, so the
        document's audit log shows who took it."""
        with self._db.write() as conn:
            self._record(conn, actor, None, "export-state", "all")
        return self._state.export()

    def import_state(self, actor: Actor, document: Any) -> dict[str, int]:
        """Load an exported state into this new data folder, recorded after the imported log."""
        return self._state.load(document, actor.name, actor.address)

    def set_state_key(self, actor: Actor, write: Callable[[], object], shown: str) -> None:
        """Write the operator's state key (`write`, design 17.15) inside the audit's
        transaction: a write that raises leaves no record; the record moves the audit head, so
        the state sealed under the new passphrase reaches the targets at the next pass."""
        with self._db.write() as conn:
            write()
            self._record(conn, actor, None, "set-state-key", shown)

    def add_target(self, actor: Actor, target: Target, since_ms: int | None = None) -> Target:
        """Save a target that passed its check (replication/check.py), with its cursor. The
        change commits in replication.db inside the audit's transaction: a refusal leaves no
        record (design 17.9)."""
        with self._db.write() as conn:
            stored = self._targets.add(target, since_ms)
            shown = f"{stored.name} {stored.location} mode={stored.mode.value}"
            self._record(conn, actor, None, "add-target", shown)
        return stored

    def edit_target(self, actor: Actor, name: str, **changes: Any) -> Target:
        with self._db.write() as conn:
            edited = self._targets.edit(name, **changes)
            self._record(conn, actor, None, "edit-target", f"{name} {' '.join(sorted(changes))}")
        return edited

    def pause_target(self, actor: Actor, name: str) -> Target:
        with self._db.write() as conn:
            target = self._targets.pause(name)
            self._record(conn, actor, None, "pause-target", name)
        return target

    def resume_target(self, actor: Actor, name: str) -> Target:
        with self._db.write() as conn:
            target = self._targets.resume(name)
            self._record(conn, actor, None, "resume-target", name)
        return target

    def remove_target(self, actor: Actor, name: str) -> None:
        with self._db.write() as conn:
            self._targets.remove(name)
            self._record(conn, actor, None, "remove-target", name)

    def record_replication_run(self, report: RunReport) -> None:
        """One replication run in the audit log (actor `replication`; outcome `failed` with
        its error), written through at once, as a request's entry is."""
        shown = (
            f"{report.target} sent={report.objects_sent} bytes={report.bytes_sent} "
            f"cursor={report.cursor}"
        )
        outcome = "ok" if report.error is None else f"failed: {report.error}"
        self._audit.append("replication", None, "replicate", shown, outcome, "-")
        self._audit.write_through()

    def record_replication_audit(self, report: AuditReport) -> None:
        """One audit of a target's copies in the audit log (actor `replication`), with what it
        sent and found (design 17.7)."""
        bad = report.error or report.mismatched_on_target or report.source_empty
        outcome = (
            "ok" if not bad else "drift" if report.error is None else f"failed: {report.error}"
        )
        self._audit.append(
            "replication",
            None,
            "audit-target",
            f"{report.target} {describe_audit(report)}",
            outcome,
            "-",
        )
        self._audit.write_through()

    def record_target_purge(self, actor: Actor, report: RunReport) -> None:
        """A confirmed purge of a target's due deletions (design 17.5) in the audit log."""
        shown = f"{report.target} deleted={report.deletions}"
        outcome = "ok" if report.error is None else f"failed: {report.error}"
        self._audit.append(actor.name, None, "purge-target", shown, outcome, actor.address)
        self._audit.write_through()

    def purge_removed(
        self, actor: Actor, before_ms: int, area: str | None = None
    ) -> list[MovedObject]:
        """Delete what replication tokens moved aside before `before_ms` (design 17.14), in
        one area or all, its bytes refunded to the area's quota; one audit record per area.
        An object already gone (deleted by hand) counts as purged."""
        if area is not None:
            self._tenants.get(area)  # NoSuchTenant for a name that is none
        purged: dict[str, list[MovedObject]] = {}
        for moved in self._tenants.moved.older_than(before_ms, area):
            tenant = self._tenants.get(moved.tenant)
            aside = self._tenants.copy_backend(tenant, moved.server, moved.copy, "removed")
            try:
                aside.remove(Handle(ObjectKind(moved.kind), moved.name))
                self._tenants.refunded(tenant, moved.size)
            except NotFound:
                pass
            self._tenants.moved.forget(moved)
            purged.setdefault(moved.tenant, []).append(moved)
        for name, objects in purged.items():
            shown = f"{len(objects)} objects, {sum(o.size for o in objects)} bytes moved aside"
            with self._db.write() as conn:
                self._record(conn, actor, name, "purge-removed", shown)
        return [moved for objects in purged.values() for moved in objects]

    def _record(
        self,
        conn: sqlite3.Connection,
        actor: Actor,
        tenant: str | None,
        action: str,
        target: str,
    ) -> None:
        self._audit.record(conn, actor.name, tenant, action, target, actor.address)
