"""`cairn`: the composition root. Parses arguments, wires the layers, maps errors to exit codes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TextIO

from cairn.backends.location import open_backend
from cairn.cli import (
    agent_cmd,
    backup_cmd,
    check_cmd,
    copy_cmd,
    diff_cmd,
    dump_cmd,
    find_cmd,
    forget_cmd,
    init_cmd,
    key_cmd,
    ls_cmd,
    peer_cmd,
    prune_cmd,
    restore_cmd,
    server_cmd,
    snapshots_cmd,
    stats_cmd,
    tag_cmd,
    unlock_cmd,
    version_cmd,
    witness_cmd,
)
from cairn.cli.context import BackendFactory, Context
from cairn.cli.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, code_for
from cairn.cli.output import Output

COMMANDS: list[ModuleType] = [
    init_cmd,
    backup_cmd,
    snapshots_cmd,
    ls_cmd,
    find_cmd,
    diff_cmd,
    dump_cmd,
    stats_cmd,
    restore_cmd,
    check_cmd,
    forget_cmd,
    prune_cmd,
    tag_cmd,
    copy_cmd,
    key_cmd,
    server_cmd,
    peer_cmd,
    witness_cmd,
    agent_cmd,
    unlock_cmd,
    version_cmd,
]


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """Global options are accepted before and after the command name (as restic does)."""
    default: object = argparse.SUPPRESS if suppress else None
    g = parser.add_argument_group("global options")
    g.add_argument(
        "-r", "--repo", default=default, help="repository location (or CAIRN_REPOSITORY)"
    )
    g.add_argument(
        "--password-file", default=default, help="read the passphrase from this file's first line"
    )
    g.add_argument(
        "--password-command", default=default, help="run this command and use its first output line"
    )
    g.add_argument(
        "--insecure-no-password",
        action="store_true",
        default=default if suppress else False,
        help="the repository's passphrase is empty (init: make it so); insecure",
    )
    g.add_argument(
        "--json", action="store_true", default=default if suppress else False, help="print JSON"
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default if suppress else False,
        help="print less",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default if suppress else 0,
        help="say more (repeatable): backup and restore list each file, others more detail",
    )
    g.add_argument("--cache-dir", default=default, help="local cache folder (or CAIRN_CACHE_DIR)")
    g.add_argument(
        "--token-file", default=default, help="a server token, for cairns:// (or CAIRN_TOKEN)"
    )
    g.add_argument(
        "--retry-for",
        default=default,
        metavar="DURATION",
        help="retry a server that does not answer this long, e.g. 5m (or CAIRN_RETRY_FOR; 60s)",
    )
    g.add_argument(
        "--no-cache",
        action="store_true",
        default=default if suppress else False,
        help="use no local cache (files cache, and the object cache of a server repository)",
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cairn", description="Deduplicated, encrypted backups.")
    parser.add_argument("--version", action=version_cmd.PrintVersion)
    _global_options(parser, suppress=False)
    common = _Parser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for module in COMMANDS:
        module.register(sub, common)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    backend_factory: BackendFactory = open_backend,
    out: TextIO | None = None,
) -> int:
    """Run one command; returns its exit code (also used as the process exit status).

    `backend_factory` and `out` are seams for in-process harnesses: what opens storage, and
    where output goes (standard output by default)."""
    json_mode = "--json" in (argv if argv is not None else sys.argv[1:])
    output = _output(out, json_mode)
    ctx: Context | None = None
    try:
        args = build_parser().parse_args(argv)
        if args.command not in ("server", "agent"):
            _stop_on_sigterm()
        output = _output(out, args.json, args.quiet)
        ctx = Context(args, output, backend_factory=backend_factory)
        run: Callable[[Context], int] = args.run
        status = run(ctx)
        output.finish()
        return status
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`cairn ls | head`): stop quietly, as other Unix tools do, and
        # keep the interpreter from complaining while it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        return _report(exc, output)
    finally:
        if ctx is not None:
            ctx.close()


def _output(out: TextIO | None, json_mode: bool, quiet: bool = False) -> Output:
    return Output(json_mode, quiet) if out is None else Output(json_mode, quiet, out)


def _stop_on_sigterm() -> None:
    """SIGTERM (a service manager, the agent stopping a job) stops a command as Ctrl-C does: at
    a safe point, releasing its lock, exit 130; what a backup stored is reused by the next.
    Commands that serve (server, agent) install their own handlers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _report(exc: BaseException, output: Output) -> int:
    code = code_for(exc)
    if os.environ.get("CAIRN_DEBUG") or code.code == "CAIRN-E999":
        traceback.print_exc(file=sys.stderr)
    message = str(exc) or type(exc).__name__
    output.finish({"code": code.code, "message": message, "hint": code.hint, "exit": code.exit})
    print(f"cairn: error {code.code}: {message}", file=sys.stderr)
    if code.exit != EXIT_USAGE or code.code != "CAIRN-E002":
        print(f"hint: {code.hint}", file=sys.stderr)
    return code.exit


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
