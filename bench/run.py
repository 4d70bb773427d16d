"""Cairn beside restic, borg and rsync on one corpus, in one run; prints a table of ratios.

    python bench/run.py [--scale 1.0] [--tools cairn,restic,borg,rsync] [--output FILE.md]
                        [--corpus generated|tree|tiny] [--source /usr/share]

--corpus picks the data (bench/corpus.py, bench/corpora.py): the generated ~1 GiB mix (default), a
copy of a real tree (--source, Debian's /usr/share by default; --scale keeps that share of its
files) or 100,000 files of 300 bytes in 100 folders (--scale scales the count).

Every tool runs the same steps on the same data, one after another, with a warm page cache (the
corpus is read once before the run and after the changes; nobody drops caches on a shared machine).
Wall time, CPU time (user + system) and peak RSS are measured per child process (wait4). No timing
is asserted anywhere: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

CORPUS_SCRIPT = Path(__file__).resolve().parent / "corpus.py"
PASSWORD = "bench passphrase"  # noqa: S105 - a throwaway benchmark repository


@dataclass
class Measure:
    seconds: float
    max_rss_kib: int
    cpu_seconds: float = 0.0
    """User + system time of the child: on a shared machine, steadier than the wall time."""


@dataclass
class Tool:
    name: str
    work: Path
    results: dict[str, Measure] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.work / f"{self.name}-repo"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CAIRN_PASSWORD=PASSWORD,
            CAIRN_CACHE_DIR=str(self.work / "cairn-cache"),
            RESTIC_PASSWORD=PASSWORD,
            BORG_PASSPHRASE=PASSWORD,
            BORG_BASE_DIR=str(self.work / "borg-base"),
            BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
            BORG_RELOCATED_REPO_ACCESS_IS_OK="yes",
        )
        return env

    def commands(self, step: str, corpus: Path, target: Path, n: int) -> list[list[str]]:
        r = str(self.repo)
        cairn = [os.environ.get("CAIRN", shutil.which("cairn") or "cairn"), "-r", r, "-q"]
        restic = ["restic", "-r", r, "-q", "--cache-dir", str(self.work / "restic-cache")]
        table: dict[str, dict[str, list[list[str]]]] = {
            "cairn": {
                "init": [[*cairn, "init"]],
                "backup": [[*cairn, "backup", str(corpus)]],
                "restore": [[*cairn, "restore", "latest", "--target", str(target)]],
                "check": [[*cairn, "check", "--read-data"]],
            },
            "restic": {
                "init": [[*restic, "init", "--repository-version", "2"]],
                "backup": [[*restic, "backup", str(corpus)]],
                "restore": [[*restic, "restore", "latest", "--target", str(target)]],
                "check": [[*restic, "check", "--read-data"]],
            },
            "borg": {
                "init": [["borg", "init", "-e", "repokey-blake2", r]],
                "backup": [
                    ["borg", "create", "--compression", "zstd,3", f"{r}::a{n}", str(corpus)]
                ],
                "restore": [["borg", "extract", f"{r}::a{n}"]],
                "check": [["borg", "check", "--verify-data", r]],
            },
            "rsync": {
                "init": [],
                "backup": [["rsync", "-a", "--delete", f"{corpus}/", f"{self.repo}/"]],
                "restore": [["rsync", "-a", f"{self.repo}/", f"{target}/"]],
                "check": [],
            },
        }
        return table[self.name][step]


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> Measure:
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with {code}:\n{err.decode(errors='replace')}")
    return Measure(seconds, usage.ru_maxrss, usage.ru_utime + usage.ru_stime)


def run_step(tool: Tool, step: str, label: str, corpus: Path, target: Path, n: int) -> None:
    total = Measure(0.0, 0)
    cwd = target if tool.name == "borg" and step == "restore" else None
    for cmd in tool.commands(step, corpus, target, n):
        m = timed(cmd, tool.env(), cwd)
        total = Measure(
            total.seconds + m.seconds,
            max(total.max_rss_kib, m.max_rss_kib),
            total.cpu_seconds + m.cpu_seconds,
        )
    tool.results[label] = total
    print(
        f"  {tool.name:7} {label:20} {total.seconds:7.2f} s  {total.max_rss_kib / 1024:6.0f} MiB"
        f"  {total.cpu_seconds:7.2f} s CPU",
        flush=True,
    )


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def warm(corpus: Path) -> None:
    for f in corpus.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(8 * 1024 * 1024):
                    pass


def fingerprint(root: Path) -> dict[str, tuple[int, str]]:
    """Size and content hash of every file, by path relative to root."""
    out = {}
    for f in sorted(root.rglob("*")):
        if f.is_file() and not f.is_symlink():
            digest = hashlib.blake2b()
            with open(f, "rb") as fh:
                while block := fh.read(1 << 20):
                    digest.update(block)
            out[str(f.relative_to(root))] = (f.stat().st_size, digest.hexdigest())
    return out


def corpus_step(action: str, corpus: Path, args: argparse.Namespace) -> None:
    """Build or change the corpus in a child process.

    Peak RSS (ru_maxrss) survives fork and exec, so every child would report at least this
    process's own high-water mark: the parent must never hold a large buffer itself.
    """
    cmd = [sys.executable, str(CORPUS_SCRIPT), action, str(corpus), "--scale", str(args.scale)]
    cmd += ["--kind", args.corpus, "--source", str(args.source)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def restored_root(tool: Tool, target: Path, corpus: Path) -> Path:
    return target / corpus.relative_to("/") if tool.name != "rsync" else target


def run(args: argparse.Namespace) -> dict[str, Tool]:
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    corpus = work / "corpus"
    print(f"making the {args.corpus} corpus (scale {args.scale}) ...", flush=True)
    corpus_step("make", corpus, args)
    tools = {name: Tool(name, work) for name in args.tools}
    warm(corpus)
    for tool in tools.values():
        run_step(tool, "init", "init", corpus, work, 0)
        run_step(tool, "backup", "initial backup", corpus, work, 1)
        tool.sizes["initial"] = du(tool.repo)
        run_step(tool, "backup", "no-change backup", corpus, work, 2)
    print("applying a day of changes ...", flush=True)
    corpus_step("change", corpus, args)
    warm(corpus)
    expected = fingerprint(corpus)
    for tool in tools.values():
        run_step(tool, "backup", "changed backup", corpus, work, 3)
        tool.sizes["changed"] = du(tool.repo)
    for tool in tools.values():
        target = work / f"{tool.name}-restore"
        target.mkdir()
        run_step(tool, "restore", "restore", corpus, target, 3)
        got = fingerprint(restored_root(tool, target, corpus))
        if got != expected:
            missing = len(expected.keys() - got.keys())
            differ = sum(1 for k in expected.keys() & got.keys() if expected[k] != got[k])
            raise SystemExit(
                f"{tool.name}: restore differs from the corpus ({missing} missing, {differ} differ)"
            )
        shutil.rmtree(target)
        if tool.commands("check", corpus, target, 3):
            run_step(tool, "check", "check --read-data", corpus, target, 3)
    return tools


ROWS = [
    ("initial backup", "s", 0.6),
    ("no-change backup", "s", 0.7),
    ("changed backup", "s", 0.7),
    ("restore", "s", 0.7),
    ("check --read-data", "s", 0.8),
]


def table(tools: dict[str, Tool]) -> str:
    names = [n for n in ("cairn", "restic", "borg", "rsync") if n in tools]
    header = "| step | " + " | ".join(names) + " | cairn ÷ best of restic, borg | target | met |"
    lines = [header, "|" + "---|" * (len(names) + 4)]

    def row(
        label: str, values: dict[str, float], fmt: str, target: float | None, versus: list[str]
    ) -> None:
        cells = [fmt.format(values[n]) if n in values else "–" for n in names]
        anchors = [values[n] for n in versus if n in values]
        ratio = (
            values["cairn"] / min(anchors)
            if "cairn" in values and anchors and min(anchors)
            else None
        )
        shown = f"{ratio:.2f}×" if ratio is not None else "–"
        met = "–" if ratio is None or target is None else ("yes" if ratio <= target else "**no**")
        goal = f"≤ {target}×" if target is not None else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {shown} | {goal} | {met} |")

    for label, _unit, target in ROWS:
        row(
            label + " (s)",
            {n: t.results[label].seconds for n, t in tools.items() if label in t.results},
            "{:.2f}",
            target,
            ["restic", "borg"],
        )
    for label, _unit, _target in ROWS:
        row(
            label + " (CPU s)",
            {n: t.results[label].cpu_seconds for n, t in tools.items() if label in t.results},
            "{:.2f}",
            None,
            ["restic", "borg"],
        )
    row(
        "repository after initial (MiB)",
        {n: t.sizes["initial"] / 2**20 for n, t in tools.items()},
        "{:.0f}",
        None,
        ["restic", "borg"],
    )
    growth = {n: (t.sizes["changed"] - t.sizes["initial"]) / 2**20 for n, t in tools.items()}
    row("growth from the day of changes (MiB)", growth, "{:.1f}", 1.0, ["restic"])
    for label, steps in (
        ("backup", ["initial backup", "no-change backup", "changed backup"]),
        ("restore", ["restore"]),
    ):
        rss = {
            n: max(t.results[s].max_rss_kib for s in steps if s in t.results) / 1024
            for n, t in tools.items()
            if any(s in t.results for s in steps)
        }
        row(f"peak RSS of {label} (MiB)", rss, "{:.0f}", 1.0, ["borg"])
    return "\n".join(lines)


def versions() -> str:
    out = []
    for cmd in (["restic", "version"], ["borg", "--version"], ["rsync", "--version"]):
        try:
            text = subprocess.run(
                cmd, capture_output=True, text=True, check=False
            ).stdout.splitlines()[0]
        except (OSError, IndexError):
            text = "not installed"
        out.append(text)
    return "; ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="corpus size factor (1.0 = ~1 GiB)"
    )
    parser.add_argument("--tools", default="cairn,restic,borg,rsync")
    parser.add_argument("--corpus", choices=["generated", "tree", "tiny"], default="generated")
    parser.add_argument(
        "--source", type=Path, default=Path("/usr/share"), help="the real tree for --corpus tree"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cairn-bench"))
    parser.add_argument("--output", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    missing = [t for t in args.tools if t != "cairn" and shutil.which(t) is None]
    if missing:
        parser.exit(
            2, f"not installed: {', '.join(missing)} (apt-get install restic borgbackup rsync)\n"
        )
    tools = run(args)
    report = table(tools)
    print("\n" + report)
    machine = (
        f"{args.corpus} corpus, scale {args.scale}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; {platform.platform()}; "
        f"{os.cpu_count()} cores; Python {platform.python_version()}; {versions()}"
    )
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    machine += f"; the bench process's own peak RSS, a floor under every figure: {floor:.0f} MiB"
    if args.output:
        args.output.write_text(f"Measured: {machine}\n\nCommand: `{command}`\n\n{report}\n")
    if args.json:
        raw = {
            n: {"results": {k: vars(v) for k, v in t.results.items()}, "sizes": t.sizes}
            for n, t in tools.items()
        }
        args.json.write_text(json.dumps(raw, indent=2))
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
