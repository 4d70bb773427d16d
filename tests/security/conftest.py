"""The security tests drive the real `cairn` command with the integration tests' runner."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "integration"))  # clitools
