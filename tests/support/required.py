"""Suites CI must not skip: a skip there is a failure when the `CI` variable is set.

A test (or a whole module, through `pytestmark`) is marked `@pytest.mark.required("what it
needs")` when CI provides what it needs (root, unshare, network namespaces, database servers…).
Away from CI such a test still skips, with its reason; in CI the skip turns into a failure that
names the suite, so a missing facility fails the build instead of silently shrinking coverage.

The required suites today: the database dumps (PostgreSQL, MariaDB), the agent partition test
(network namespaces), the mount tests (unshare, root tmpfs mounts, a read-only target) and the
inotify limit test (a user namespace). The SFTP, S3, WebDAV, FTP, etcd and browser suites join
by marking their modules the same way (`pytestmark = pytest.mark.required("an SFTP server")`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

MARKER = "required"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(needs): a suite CI must run; with CI set, a skip fails the test"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    marker = item.get_closest_marker(MARKER)
    if marker is None or not report.skipped or hasattr(report, "wasxfail"):
        return
    if not os.environ.get("CI"):
        return
    needs = marker.args[0] if marker.args else "a required facility"
    report.outcome = "failed"
    report.longrepr = (
        f"CI must run this suite (it needs {needs}), but it was skipped: {_why(report)}"
    )


def _why(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)
