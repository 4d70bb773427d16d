"""cairn version: which Cairn, on which Python and platform, and which repository format it
reads and writes (what a bug report needs, and what restic users look for first)."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from typing import Any

from cairn import __version__
from cairn.cli.context import Context
from cairn.format.config import CONFIG_VERSION

FORMATS_READ = (CONFIG_VERSION,)
"""Repository format versions this Cairn opens (docs/design.md: "Format version")."""
FORMAT_WRITTEN = CONFIG_VERSION
"""The format version `init` gives a new repository."""
LIBRARIES = ("pyfastcdc", "blake3", "zstandard", "cryptography", "argon2-cffi", "msgpack", "httpx")
"""The libraries whose versions `-v` adds: the native code on the hot path, and the client."""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("version", parents=[common], help="show the versions of Cairn and its parts")
    p.set_defaults(run=run)


def facts() -> dict[str, Any]:
    return {
        "version": __version__,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "repository_formats_read": list(FORMATS_READ),
        "repository_format_written": FORMAT_WRITTEN,
    }


def summary() -> str:
    """One line, also printed by `cairn --version`."""
    f = facts()
    read = ", ".join(str(v) for v in f["repository_formats_read"])
    return (
        f"cairn {f['version']} (repository format {f['repository_format_written']}, reads {read})"
        f" on {f['python_implementation']} {f['python']}, {f['platform']}"
    )


def libraries() -> dict[str, str]:
    """The installed version of each library in LIBRARIES ("missing" if it is not there)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


class PrintVersion(argparse.Action):
    """`cairn --version`: the summary line as it is (argparse's own action would wrap it)."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        print(summary())
        parser.exit()


def run(ctx: Context) -> int:
    ctx.output.text(summary())
    doc = facts()
    if ctx.verbosity or ctx.args.json:
        doc["libraries"] = libraries()
    if ctx.verbosity:
        for name, version in doc["libraries"].items():
            ctx.output.text(f"  {name} {version}")
    ctx.output.json(doc)
    return 0
