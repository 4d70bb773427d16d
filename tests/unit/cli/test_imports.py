"""Every command starts without loading the server stack or the HTTP client: they cost ~0.1 s
each, and only `cairn server` and a server location need them (design 14.1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SERVER_STACK = ("starlette", "uvicorn", "prometheus_client")
HTTP_CLIENT = ("httpx",)
SRC = Path(__file__).resolve().parents[3] / "src"


def loaded_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running `code`."""
    modules = "sorted({m.split('.')[0] for m in sys.modules})"
    probe = f"{code}\nimport json, sys\nprint(json.dumps({modules}))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC)},
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_cli_loads_neither_the_server_nor_the_http_client() -> None:
    loaded = loaded_after("import cairn.cli.main")
    assert "cairn" in loaded
    assert loaded.isdisjoint(SERVER_STACK + HTTP_CLIENT), loaded & set(SERVER_STACK + HTTP_CLIENT)


def test_a_local_repository_loads_no_http_client(tmp_path: Path) -> None:
    loaded = loaded_after(
        "from cairn.backends.location import open_backend\n"
        f"open_backend({str(tmp_path / 'repo')!r}, create=True)"
    )
    assert loaded.isdisjoint(SERVER_STACK + HTTP_CLIENT)


def test_a_server_location_loads_the_http_client(tmp_path: Path) -> None:
    loaded = loaded_after(
        "from pathlib import Path\n"
        "from cairn.backends.location import RemoteCredentials, open_backend\n"
        f"known = Path({str(tmp_path / 'known')!r})\n"
        "try:\n"
        "    open_backend('cairns://127.0.0.1:1/t', remote=RemoteCredentials('cairn_x', known))\n"
        "except Exception:\n"
        "    pass  # no server there: what it imported on the way is the point"
    )
    assert "httpx" in loaded and loaded.isdisjoint(SERVER_STACK)
