"""Runs `cairn` commands one after another in one Python process, each through the command
line's entry point (`cairn.cli.main.main`) with its own arguments, environment and output.

The kill harness checks the repository with 6 to 10 commands after every kill. Started one by one,
the interpreter and the imports cost most of the time; this process pays them once per run. The
commands run the same code a `cairn` process runs; only the processes under test, the ones that
get killed, need to be processes of their own.

Started as a script by `Batch`: one JSON request per line on stdin (`{"argv": [...], "env":
{...}}`), one JSON answer per line on the file descriptor given as argument (`{"code": int,
"out": str, "err": str}`).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

from cairn.cli.main import main

_ANSWER_TIMEOUT_S = 600.0


def _run_one(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    os.environ.clear()
    os.environ.update(env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's --help and --version
                code = exc.code if isinstance(exc.code, int) else 1
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return {
            "code": code,
            "out": out.read().decode(errors="replace"),
            "err": err.read().decode(errors="replace"),
        }


def serve(requests: IO[str], answers: IO[str]) -> None:
    for line in requests:
        request = json.loads(line)
        answers.write(json.dumps(_run_one(request["argv"], request["env"])) + "\n")
        answers.flush()


class Batch:
    """A batch process; `run` sends it one command and waits for the answer."""

    def __init__(self, env: dict[str, str]) -> None:
        read, write = os.pipe()
        self._popen = subprocess.Popen(
            [sys.executable, str(Path(__file__)), str(write)],
            stdin=subprocess.PIPE,
            env=env,
            pass_fds=(write,),
            text=True,
        )
        os.close(write)
        self._answers = os.fdopen(read, "r", encoding="utf-8")

    def run(self, argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        assert self._popen.stdin is not None
        self._popen.stdin.write(json.dumps({"argv": argv, "env": env}) + "\n")
        self._popen.stdin.flush()
        ready, _, _ = select.select([self._answers], [], [], _ANSWER_TIMEOUT_S)
        line = self._answers.readline() if ready else ""
        if not line:
            self.close()
            what = "did not answer" if not ready else "died"
            raise AssertionError(f"`cairn {' '.join(argv)}` in the batch process {what}")
        answer = json.loads(line)
        return int(answer["code"]), str(answer["out"]), str(answer["err"])

    def close(self) -> None:
        if self._popen.poll() is None:
            assert self._popen.stdin is not None
            self._popen.stdin.close()
            try:
                self._popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        self._answers.close()


if __name__ == "__main__":
    with os.fdopen(int(sys.argv[1]), "w", encoding="utf-8") as channel:
        serve(sys.stdin, channel)
