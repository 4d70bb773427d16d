"""Database dumps taken before a backup (design 15.4). Interface agreed between the runner
(caller) and this module (owner: hooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from cairn.agent.spec import DumpSpec
from cairn.core.errors import CairnError


class DumpFailed(CairnError):
    """A dump did not complete; the run fails without a backup."""


def take_dumps(specs: Sequence[DumpSpec], staging: Path, log: BinaryIO) -> list[Path]:
    """Dump every database into `staging` (emptied first); returns the files written, which the
    runner adds to the backup. Raises DumpFailed with what to do."""
    raise NotImplementedError
