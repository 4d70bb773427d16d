"""-v wraps a command's progress display: it adds file lines and loses nothing of the display."""

from __future__ import annotations

import io

from cairn.cli.output import Output
from cairn.cli.verbose import VerboseProgress
from cairn.core.progress import SilentProgress


def test_file_actions_print_escaped_and_warnings_reach_the_archiver() -> None:
    out = io.StringIO()
    progress = VerboseProgress(SilentProgress(), Output(json_mode=False, out=out))

    progress.file_action(b"/d/caf\xe9", "stored")
    progress.warn(b"/d/gone", "cannot read")

    assert out.getvalue() == "stored   /d/caf\\xe9\n"
    # The archiver reads the warnings off its Progress: a backup at -v still reports them.
    assert progress.warnings == [(b"/d/gone", "cannot read")]


def test_nothing_is_printed_in_json_mode() -> None:
    out = io.StringIO()
    progress = VerboseProgress(SilentProgress(), Output(json_mode=True, out=out))
    progress.file_action(b"/d/f", "restored")
    assert out.getvalue() == ""
