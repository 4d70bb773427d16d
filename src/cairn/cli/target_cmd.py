"""cairn server target: the places the server replicates to (design 17.9-17.12).

`add` checks the location (credentials, connection, capabilities) before it saves anything;
`test` repeats the check at any time; `status` reads the replication database, so it needs no
running server. Changes are audited admin operations (`AdminOps.add_target` …), recorded as
``cli:<unix user>``; this module parses and presents.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cairn.backends.base import ObjectKind
from cairn.backends.location import open_backend
from cairn.cli.context import Context
from cairn.cli.serverdata import cli_actor, data_option, server_services
from cairn.core.units import format_duration, format_size, parse_interval, parse_rate, parse_size
from cairn.replication.check import CheckStep, check_location
from cairn.replication.credentials import read_credentials, target_environ
from cairn.replication.model import Filters, Mode, Target
from cairn.replication.status import target_status
from cairn.replication.targets import BadTargetSetting, spec_to_json, validate

if TYPE_CHECKING:
    from cairn.server.context import Services

CHECK_RETRY_FOR = 10.0
"""Seconds the check retries a storage server that does not answer (a check should answer
soon; a run retries as long as any command)."""
KINDS = [k.value for k in ObjectKind if k is not ObjectKind.LOCK]


def register(actions: Any, shared: argparse.ArgumentParser) -> None:
    """`cairn server target ACTION`, under `cairn server`'s actions."""
    target = actions.add_parser("target", parents=[shared], help="manage replication targets")
    sub = target.add_subparsers(dest="target_command", metavar="ACTION", required=True)

    add = _action(sub, shared, "add", "check a location, then save it as a target", run_add)
    add.add_argument("location", help="a folder, sftp:, s3:, webdav:, ftp(s):// location")
    _settings_options(add, editing=False)

    edit = _action(sub, shared, "edit", "change a target's settings", run_edit)
    edit.add_argument("--location", help="a new location (checked first; sent everything again)")
    _settings_options(edit, editing=True)

    _action(sub, shared, "list", "list the targets", run_list, named=False)
    _action(sub, shared, "show", "a target's settings", run_show)
    _action(sub, shared, "remove", "remove a target (its copy stays where it is)", run_remove)
    _action(sub, shared, "pause", "stop replicating to a target until resumed", run_pause)
    _action(sub, shared, "resume", "resume a paused target", run_resume)
    _action(sub, shared, "test", "check a target's location now, step by step", run_test)
    _action(
        sub, shared, "audit", "compare a target's copies with the server's storage now", run_audit
    )
    purge = _action(
        sub,
        shared,
        "purge",
        "delete a mirror target's due deletions now, past its threshold",
        run_purge,
    )
    purge.add_argument(
        "--yes", action="store_true", help="delete them (without it: list them, delete nothing)"
    )
    status = _action(sub, shared, "status", "state, lag and runs of targets", run_status, False)
    status.add_argument("name", metavar="NAME", nargs="?", help="one target (default: all)")


def _action(
    sub: Any,
    shared: argparse.ArgumentParser,
    name: str,
    helptext: str,
    run: Any,
    named: bool = True,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[shared], help=helptext)
    data_option(parser)
    if named:
        parser.add_argument("name", metavar="NAME", help="the target's name ([a-z0-9-])")
    parser.set_defaults(run=run)
    return parser


def _settings_options(p: argparse.ArgumentParser, editing: bool) -> None:
    """The settings `add` and `edit` share; `edit` changes only those given. In `edit`, `none`
    clears --limit-upload and --window, and `all` clears a filter."""
    p.add_argument(
        "--mode", choices=[m.value for m in Mode], help="copy (default), mirror, only-new"
    )
    p.add_argument("--priority", type=int, help="lower runs first (default 100)")
    p.add_argument("--retries", type=int, help="retries after a failed run (default 5)")
    p.add_argument("--backoff", metavar="DURATION", help="first wait after a failure (30s)")
    p.add_argument("--limit-upload", metavar="RATE", help="like 5MiB/s (default: none)")
    p.add_argument(
        "--window",
        action="append",
        metavar="HH:MM-HH:MM",
        help="when the upload limit applies, like 08:00-18:00 (repeatable; default: always)",
    )
    p.add_argument(
        "--schedule", help='continuous (default), "every 15m", or a cron line like "0 2 * * *"'
    )
    p.add_argument("--tenant", action="append", metavar="NAME", help="only these tenants")
    p.add_argument("--token", action="append", metavar="ID", help="only what these tokens sent")
    p.add_argument(
        "--kind",
        action="append",
        choices=[*KINDS, "all"] if editing else KINDS,
        help="only these object kinds (config and keys always go)",
    )
    if not editing:
        p.add_argument("--since", metavar="DATE", help="only-new: from this date, like 2026-01-31")
    p.add_argument(
        "--credentials",
        metavar="FILE",
        help="this target's own NAME=value credentials (mode 600), read at every open and laid "
        "over the server's environment"
        + ("; none: the server's environment alone" if editing else ""),
    )
    p.add_argument("--quarantine", metavar="DURATION", help="mirror: deletions wait this (14d)")
    p.add_argument("--max-delete-count", type=int, metavar="N", help="mirror: stop above (1000)")
    p.add_argument("--max-delete-bytes", metavar="SIZE", help="mirror: stop above (50G)")


def _changes(args: argparse.Namespace, editing: bool) -> dict[str, Any]:
    """The `Target` fields the options give, parsed; BadTargetSetting for one that is not."""
    changes: dict[str, Any] = {}
    if args.mode is not None:
        changes["mode"] = Mode(args.mode)
    for field in ("priority", "retries", "schedule", "max_delete_count"):
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    if args.backoff is not None:
        changes["backoff_s"] = _parsed("--backoff", parse_interval, args.backoff)
    if args.quarantine is not None:
        changes["quarantine_s"] = int(_parsed("--quarantine", parse_interval, args.quarantine))
    if args.max_delete_bytes is not None:
        changes["max_delete_bytes"] = _parsed(
            "--max-delete-bytes", parse_size, args.max_delete_bytes
        )
    if args.limit_upload is not None:
        limit = args.limit_upload
        cleared = editing and limit == "none"
        changes["limit_bps"] = None if cleared else _parsed("--limit-upload", parse_rate, limit)
    if args.window is not None:
        changes["windows"] = () if editing and args.window == ["none"] else tuple(args.window)
    if args.credentials is not None:
        cleared = editing and args.credentials == "none"
        changes["credentials"] = None if cleared else _credentials_path(args.credentials)
    filters = _filters(args)
    if filters:
        changes["filters"] = filters
    return changes


def _credentials_path(text: str) -> str:
    """The file's absolute path (`serve` runs elsewhere), read now so that a bad name, line or
    mode is refused before anything is saved (design 17.9)."""
    path = Path(text).expanduser().absolute()
    read_credentials(path)
    return str(path)


def _filters(args: argparse.Namespace) -> dict[str, tuple[Any, ...]]:
    given: dict[str, tuple[Any, ...]] = {}
    for field, values in (("tenants", args.tenant), ("tokens", args.token), ("kinds", args.kind)):
        if values is not None:
            chosen = () if values == ["all"] else tuple(values)
            given[field] = tuple(ObjectKind(k) for k in chosen) if field == "kinds" else chosen
    return given


def _parsed(option: str, parse: Any, text: str) -> Any:
    try:
        return parse(text)
    except ValueError as exc:
        raise BadTargetSetting(f"{option}: {exc}") from exc


def _since_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadTargetSetting(
            f"--since {text!r} is not a date: give 2026-01-31 or 2026-01-31T18:00"
        ) from exc
    return int(when.timestamp() * 1000)  # a naive date is local time, as people mean it


def _check(ctx: Context, services: Services, target: Target) -> list[CheckStep]:
    """The check of design 17.10, each step printed as it ends."""

    def show(step: CheckStep) -> None:
        mark = "ok" if step.ok else "FAILED"
        ctx.output.text(f"  {step.name:<7} {mark:<6} {step.detail} ({step.seconds:.1f}s)")

    opener = functools.partial(open_backend, retry_for=CHECK_RETRY_FOR)
    return check_location(
        target.location,
        opener,
        ctx.clock,
        data_folder=services.settings.data,
        environ=target_environ(target, os.environ),
        on_step=show,
    )


def _check_tenants(services: Services, names: tuple[str, ...]) -> None:
    unknown = sorted(set(names) - {t.name for t in services.tenants.all()})
    if unknown:
        raise BadTargetSetting(
            f"no tenant named {', '.join(unknown)}: `cairn server tenant list` shows them"
        )


def run_add(ctx: Context) -> int:
    args = ctx.args
    changes = _changes(args, editing=False)
    filters = changes.pop("filters", {})
    target = Target(name=args.name, location=args.location, filters=Filters(**filters), **changes)
    services = server_services(ctx)
    since_ms = _since_ms(args.since)
    if since_ms is not None and target.mode is not Mode.ONLY_NEW:
        raise BadTargetSetting("--since applies to --mode only-new")
    _check_tenants(services, target.filters.tenants)
    validate(target)  # a bad setting is refused before any connection is made
    ctx.output.text(f"checking {target.location}:")
    steps = _check(ctx, services, target)
    stored = services.admin.add_target(cli_actor(), target, since_ms)
    ctx.output.text(f"target {stored.name} added ({stored.mode.value}, {stored.schedule})")
    ctx.output.json({"target": _shown(stored), "check": [_step(s) for s in steps]})
    return 0


def run_edit(ctx: Context) -> int:
    """Validate the edited target whole, check a new location, then save."""
    args = ctx.args
    services = server_services(ctx)
    old = services.targets.get(args.name)
    changes = _changes(args, editing=True)
    if "filters" in changes:
        changes["filters"] = _merged(old.filters, changes["filters"])
        _check_tenants(services, changes["filters"].tenants)
    if args.location is not None:
        changes["location"] = args.location
    if not changes:
        raise BadTargetSetting("nothing to change: give at least one setting")
    new = dataclasses.replace(old, **changes)
    validate(new)
    steps: list[CheckStep] = []
    if args.location is not None or "credentials" in changes:
        ctx.output.text(f"checking {new.location}:")
        steps = _check(ctx, services, new)
    edited = services.admin.edit_target(cli_actor(), args.name, **changes)
    ctx.output.text(f"target {edited.name} changed: {', '.join(sorted(changes))}")
    ctx.output.json({"target": _shown(edited), "check": [_step(s) for s in steps]})
    return 0


def _merged(old: Filters, given: dict[str, tuple[Any, ...]]) -> Filters:
    return Filters(
        tenants=given.get("tenants", old.tenants),
        tokens=given.get("tokens", old.tokens),
        kinds=given.get("kinds", old.kinds),
    )


def run_list(ctx: Context) -> int:
    targets = server_services(ctx).targets.list()
    rows = [
        [
            t.name,
            t.location,
            t.mode.value,
            t.schedule,
            str(t.priority),
            "paused" if t.paused else "active",
        ]
        for t in targets
    ]
    ctx.output.table(["target", "location", "mode", "schedule", "priority", "state"], rows)
    ctx.output.json([_shown(t) for t in targets])
    return 0


def run_show(ctx: Context) -> int:
    target = server_services(ctx).targets.get(ctx.args.name)
    shown = _shown(target)
    for key, value in shown.items():
        ctx.output.text(f"{key:<17} {value}")
    ctx.output.json(shown)
    return 0


def run_remove(ctx: Context) -> int:
    server_services(ctx).admin.remove_target(cli_actor(), ctx.args.name)
    ctx.output.text(f"target {ctx.args.name} removed (what it holds stays there)")
    ctx.output.json({"removed": ctx.args.name})
    return 0


def run_pause(ctx: Context) -> int:
    target = server_services(ctx).admin.pause_target(cli_actor(), ctx.args.name)
    ctx.output.text(f"target {target.name} paused")
    ctx.output.json(_shown(target))
    return 0


def run_resume(ctx: Context) -> int:
    target = server_services(ctx).admin.resume_target(cli_actor(), ctx.args.name)
    ctx.output.text(f"target {target.name} resumed")
    ctx.output.json(_shown(target))
    return 0


def run_test(ctx: Context) -> int:
    services = server_services(ctx)
    target = services.targets.get(ctx.args.name)
    ctx.output.text(f"checking {target.name} at {target.location}:")
    steps = _check(ctx, services, target)
    ctx.output.text(f"target {target.name}: every check passed")
    ctx.output.json({"target": target.name, "ok": True, "check": [_step(s) for s in steps]})
    return 0


def run_audit(ctx: Context) -> int:
    """The audit `serve` runs daily (design 17.7), now: each tenant's copy listed against the
    server's storage; what is missing is sent, the rest reported; nothing is deleted."""
    from cairn.replication.engine import Replicator
    from cairn.replication.errors import ReplicationError, SourceLooksEmpty, TargetCorrupt
    from cairn.replication.layout import TargetLayouts, target_opener
    from cairn.replication.scheduler import describe_audit
    from cairn.server.replication import ServerSource

    services = server_services(ctx)
    target = services.targets.get(ctx.args.name)
    assert services.replication_db is not None
    engine = Replicator(
        services.replication_db, ServerSource(services.tenants), services.server_id, ctx.clock
    )
    layouts = TargetLayouts(target.location, services.server_id, target_opener(target))
    try:
        report = engine.audit(target, layouts)
    finally:
        layouts.close()
    services.admin.record_replication_audit(report)
    ctx.output.text(f"audit of {target.name}: {describe_audit(report)}")
    for label, found in (
        ("other size on the target", report.mismatched_on_target),
        ("on the target only (left alone)", report.extra_on_target),
        ("damaged on the server (not sent)", report.damaged_at_source),
    ):
        for name in found:
            ctx.output.text(f"  {label}: {name}")
    ctx.output.json(dataclasses.asdict(report))
    if report.error is not None:
        raise ReplicationError(f"the audit of {target.name} stopped: {report.error}")
    if report.mismatched_on_target:
        raise TargetCorrupt(
            f"{len(report.mismatched_on_target)} object(s) on {target.name} differ from the "
            "server's: the copy is damaged there"
        )
    if report.source_empty:
        raise SourceLooksEmpty(
            f"the server's storage of {', '.join(report.source_empty)} lists nothing while "
            f"{target.name} holds a copy: is the data folder mounted?"
        )
    return 0


def run_purge(ctx: Context) -> int:
    """The mirror's deletions that waited out the quarantine delay (design 17.5), listed; with
    `--yes` deleted on the target now, even past the deletion threshold that stopped the runs
    (the operator saw the list). Nothing still in quarantine goes; audited."""
    from cairn.replication.engine import Replicator
    from cairn.replication.errors import ReplicationError
    from cairn.replication.layout import TargetLayouts, target_opener
    from cairn.server.replication import ServerSource

    services = server_services(ctx)
    target = services.targets.get(ctx.args.name)
    assert services.replication_db is not None
    engine = Replicator(
        services.replication_db, ServerSource(services.tenants), services.server_id, ctx.clock
    )
    due = engine.due_deletions(target)
    shown = [{"tenant": t, "object": f"{k.value}/{n}", "size": size} for t, k, n, size in due]
    total = sum(size for *_, size in due)
    for tenant_id, kind, name, size in due:
        ctx.output.text(f"  {tenant_id} {kind.value}/{name} ({format_size(size)})")
    if not ctx.args.yes:
        ctx.output.text(
            f"{len(due)} deletion(s) due on {target.name} ({format_size(total)}); nothing "
            "deleted: run again with --yes to delete them"
        )
        ctx.output.json({"target": target.name, "due": shown, "deleted": 0, "dry_run": True})
        return 0
    layouts = TargetLayouts(target.location, services.server_id, target_opener(target))
    try:
        report = engine.purge(target, layouts)
    finally:
        layouts.close()
    services.admin.record_target_purge(cli_actor(), report)
    ctx.output.text(f"{report.deletions} object(s) deleted on {target.name}")
    ctx.output.json({"target": target.name, "due": shown, "deleted": report.deletions})
    if report.error is not None:
        raise ReplicationError(f"the purge of {target.name} stopped: {report.error}")
    return 0


def run_status(ctx: Context) -> int:
    services = server_services(ctx)
    store = services.targets
    targets = [store.get(ctx.args.name)] if ctx.args.name else store.list()
    ids = {t.name: t.id for t in services.tenants.all()}
    now = ctx.clock.now()
    statuses = [target_status(store.db, t, now, ids) for t in targets]
    rows = [
        [
            s.name,
            s.state.value,
            format_duration(s.lag_s),
            f"{s.lag_objects} / {format_size(s.lag_bytes)}",
            _when(s.last_success_ms),
            f"{s.objects_sent} / {format_size(s.bytes_sent)}",
            str(s.failures),
            s.last_error or "",
        ]
        for s in statuses
    ]
    headers = ["target", "state", "lag", "pending", "last success", "sent", "failures", "error"]
    ctx.output.table(headers, rows)
    ctx.output.json([s.as_json() for s in statuses])
    return 0


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _shown(target: Target) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(spec_to_json(target))
    spec.pop("version")
    return {"name": target.name, **spec, "created_ms": target.created_ms}


def _step(step: CheckStep) -> dict[str, Any]:
    return {"step": step.name, "ok": step.ok, "detail": step.detail, "seconds": step.seconds}
