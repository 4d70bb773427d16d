"""A skip in a required suite is a failure in CI, and only there (issue 12 item 7)."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest

@pytest.mark.required("a facility this machine lacks")
def test_needs_it():
    pytest.skip("the facility is missing")

def test_optional():
    pytest.skip("not required")
"""


def test_in_ci_a_skipped_required_test_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("-p", "tests.support.required", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*CI must run this suite (it needs a facility this machine lacks)*facility is missing*"]
    )


def test_away_from_ci_it_skips_with_its_reason(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    pytester.makepyfile(SUITE)
    result = pytester.runpytest("-p", "tests.support.required", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
