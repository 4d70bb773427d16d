"""The console in a real browser (issue 16): a real `cairn server serve`, a console user made
with `cairn server user add`, a job result reported by the agent's own reporting code, then
Chromium signs in through the page by its labels, reads the dashboard (a failed job in red, a
name with markup shown as text), and signs out; a wrong password is refused, a POST without the
CSRF token is refused, and no page may be framed. Screenshots of each page are kept in the
test's folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from cairn.agent.report import report_body, report_run
from cairn.agent.spec import Every, JobSpec
from cairn.core.clock import FrozenClock
from cairn.notify.message import Outcome, RunSummary
from cairn.server.auth import Role
from cairn.server.jobresults import JobResults, parse_report
from tests.support.clitools import Cairn
from tests.support.serverfixture import RunningServer, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

pytestmark = pytest.mark.required("Chromium and Playwright (the browser tests)")

PASSWORD = "a long console password"
MARKUP_HOST = "<script>alert('x')</script>"
RED = "rgb(180, 35, 24)"
"""The console's --bad colour (console.css), a failed job's badge."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("console")
    with running_server(folder / "data") as running:
        offsite = folder / "offsite"
        offsite.mkdir()
        Cairn(running.data).run(
            "server", "target", "add", "offsite", str(offsite), "--data", str(running.data)
        )
        snapshot = backed_up(running, running.tenant("acme", quota=10 * 2**30), folder)
        running.tenant("globex")
        token_file = folder / "backup.token"
        token_file.write_text(running.token("acme", Role.BACKUP) + "\n")
        for host, outcome in (("laptop-7", Outcome.FAILURE), (MARKUP_HOST, Outcome.SUCCESS)):
            job = JobSpec(
                name="home",
                repository=running.location("acme"),
                paths=("/home",),
                schedule=Every(3600.0),
                token_file=str(token_file),
            )
            now = time.time()
            report_run(
                job,
                RunSummary(
                    job="home",
                    host=host,
                    started=now - 60,
                    ended=now,
                    outcome=outcome,
                    snapshot=snapshot if outcome is Outcome.SUCCESS else None,
                ),
            )
        for host, hours_ago in (("desk-late", 1.5), ("desk-missed", 3.0)):
            reported_long_ago(running, host, hours_ago)
        yield running


def backed_up(running: RunningServer, admin_token: str, folder: Path) -> str:
    """A real backup to the tenant by the CLI; returns its snapshot ID."""
    tool = Cairn(running.location("acme"), cache=folder / "cache")
    env = tool.env(CAIRN_TOKEN=admin_token, XDG_CONFIG_HOME=str(folder / "home"))
    source = folder / "source"
    source.mkdir()
    (source / "notes.txt").write_text("notes\n" * 50_000)
    tool.run("init", env=env)
    tool.run("backup", str(source), env=env)
    return str(tool.run("snapshots", "--json", env=env).json()[0]["id"])


def reported_long_ago(running: RunningServer, host: str, hours_ago: float) -> None:
    """An hourly job's success that reached the server `hours_ago` hours ago (the server's
    arrival time is what staleness goes by), then nothing since: as if the machine went off."""
    arrived = datetime.now(UTC) - timedelta(hours=hours_ago)
    started = arrived.timestamp() - 60
    run = RunSummary(
        job="home", host=host, started=started, ended=started + 60, outcome=Outcome.SUCCESS
    )
    result = parse_report(report_body(run, Every(3600.0)))
    JobResults(running.services().db, FrozenClock(arrived)).record("acme", result, "test")


def add_admin(server: RunningServer, folder: Path) -> None:
    password_file = folder / "admin.password"
    password_file.write_text(PASSWORD + "\n")
    Cairn(server.data).run(
        "server", "user", "add", "admin", "--role", "server-admin",
        "--password-file", str(password_file), "--data", str(server.data),
    )  # fmt: skip


def sign_in(page: Page, server: RunningServer, password: str) -> None:
    page.goto(f"{server.url}/console/sign-in")
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_console_in_a_browser(
    server: RunningServer, browser_context: BrowserContext, tmp_path: Path
) -> None:
    page = browser_context.new_page()
    first = page.goto(f"{server.url}/console/")
    assert first is not None and first.status == 503  # no admin yet: the set-up page
    page.screenshot(path=tmp_path / "0-setup.png", full_page=True)
    assert page.get_by_text("cairn server user add admin").is_visible()
    add_admin(server, tmp_path)

    sign_in(page, server, "not the password")
    assert page.get_by_role("alert").inner_text().startswith("CAIRN-E153")
    page.screenshot(path=tmp_path / "1-refused.png", full_page=True)

    sign_in(page, server, PASSWORD)
    page.wait_for_url(f"{server.url}/console/")
    assert page.locator("html").get_attribute("lang") == "en"
    page.screenshot(path=tmp_path / "2-dashboard.png", full_page=True)
    failed = page.locator("tr", has_text="laptop-7")
    badge = failed.locator(".badge.outcome-failure")
    assert badge.inner_text() == "failure"
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == RED
    assert page.get_by_role("cell", name=MARKUP_HOST, exact=True).is_visible()  # text, not code
    assert page.locator("script").count() == 0
    assert page.get_by_role("cell", name="acme").first.is_visible()
    staleness = {
        host: page.locator("tr", has_text=host).locator(".badge").first.inner_text()
        for host in ("laptop-7", MARKUP_HOST, "desk-late", "desk-missed")
    }
    assert staleness == {
        "laptop-7": "never",  # it has only failed
        MARKUP_HOST: "on-time",
        "desk-late": "late",
        "desk-missed": "missed",
    }
    missed = page.locator("tr", has_text="desk-missed").locator(".badge").first
    assert missed.evaluate("e => getComputedStyle(e).backgroundColor") == RED
    assert page.locator("tr", has_text="desk-late").get_by_text("every 1h").is_visible()

    page.get_by_role("link", name="acme").first.click()
    page.wait_for_url(f"{server.url}/console/tenants/acme")
    page.screenshot(path=tmp_path / "2b-tenant.png", full_page=True)
    assert page.get_by_role("heading", name="Tenant acme").is_visible()
    assert page.locator("#snapshot-count").inner_text() == "1"
    arrivals = page.locator("section", has=page.get_by_role("heading", name="Last backups"))
    assert arrivals.get_by_role("cell", name=MARKUP_HOST, exact=True).is_visible()
    assert page.locator("tr", has_text="desk-missed").locator(".badge").first.inner_text() == (
        "missed"
    )
    assert page.get_by_role("heading", name="Replication").is_visible()
    copy = page.locator("tr", has_text="offsite").locator(".badge").inner_text()
    assert copy in ("ok", "lagging", "failing")  # whether serve has sent it yet is its business

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{server.url}/console/sign-in")
    page.goto(f"{server.url}/console/")
    assert page.url == f"{server.url}/console/sign-in"  # the session is gone
    page.screenshot(path=tmp_path / "3-signed-out.png", full_page=True)


def test_forms_need_the_csrf_token_and_no_page_may_be_framed(
    server: RunningServer, browser_context: BrowserContext, tmp_path: Path
) -> None:
    if (
        "admin"
        not in Cairn(server.data).run("server", "user", "list", "--data", str(server.data)).out
    ):
        add_admin(server, tmp_path)
    page = browser_context.new_page()
    sign_in(page, server, PASSWORD)
    page.wait_for_url(f"{server.url}/console/")
    # the browser's own cookie, a form without the token: refused
    forged = page.request.post(f"{server.url}/console/sign-out", form={"nothing": "here"})
    assert forged.status == 403 and "CAIRN-E154" in forged.text()
    page.reload()
    assert page.url == f"{server.url}/console/"  # still signed in
    answer = httpx.get(f"{server.url}/console/sign-in", verify=False)
    assert answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    # a page on another origin that frames the console gets nothing shown
    framer = browser_context.new_page()
    framer.set_content(f'<iframe id="f" src="{server.url}/console/sign-in"></iframe>')
    # set_content returns once the page and its frame have loaded (or been refused)
    child = framer.frames[1]
    assert child.url.startswith("chrome-error://")  # Chromium refused to show it
    assert child.get_by_label("User name").count() == 0


def test_alerts_and_the_audit_log(
    server: RunningServer, browser_context: BrowserContext, tmp_path: Path
) -> None:
    if (
        "admin"
        not in Cairn(server.data).run("server", "user", "list", "--data", str(server.data)).out
    ):
        add_admin(server, tmp_path)
    page = browser_context.new_page()
    sign_in(page, server, "a wrong password")  # one refused sign-in for the audit log
    sign_in(page, server, PASSWORD)
    page.wait_for_url(f"{server.url}/console/")

    page.get_by_role("link", name="Alerts").click()
    page.wait_for_url(f"{server.url}/console/alerts")
    page.screenshot(path=tmp_path / "4-alerts.png", full_page=True)
    listed = page.locator("section", has=page.get_by_role("heading", name="Machines that need"))
    for host in ("laptop-7", "desk-late", "desk-missed"):
        assert listed.get_by_role("cell", name=host, exact=True).is_visible()
    assert listed.get_by_role("cell", name=MARKUP_HOST, exact=True).count() == 0  # it is fine

    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url(f"{server.url}/console/audit")
    page.get_by_role("button", name="Verify the chain").click()
    page.wait_for_url("**/console/audit?verify=1")
    assert page.get_by_role("status").inner_text().startswith("Chain intact")
    page.get_by_label("Kind").select_option("console-sign-in")
    page.get_by_label("Tenant").select_option("")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/console/audit?*kind=console-sign-in*")
    page.screenshot(path=tmp_path / "5-audit.png", full_page=True)
    kinds = page.locator("table.audit tbody tr td:nth-child(5)").all_inner_texts()
    assert kinds and set(kinds) == {"console-sign-in"}
    refused = page.locator("tr.audit-failed", has_text="CAIRN-E153").first
    assert refused.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(253, 236, 234)"


def test_the_console_in_german(server: RunningServer, chromium: Browser, tmp_path: Path) -> None:
    """A browser that asks for German gets every page in German (labels too), and the switch
    in the header goes back to English."""
    if (
        "admin"
        not in Cairn(server.data).run("server", "user", "list", "--data", str(server.data)).out
    ):
        add_admin(server, tmp_path)
    context = chromium.new_context(
        ignore_https_errors=True, locale="de-DE", viewport={"width": 1280, "height": 800}
    )
    try:
        page = context.new_page()
        page.goto(f"{server.url}/console/sign-in")
        assert page.locator("html").get_attribute("lang") == "de"
        page.get_by_label("Benutzername").fill("admin")
        page.get_by_label("Passwort").fill(PASSWORD)
        page.get_by_role("button", name="Anmelden").click()
        page.wait_for_url(f"{server.url}/console/")
        page.screenshot(path=tmp_path / "6-dashboard-de.png", full_page=True)
        assert page.get_by_role("heading", name="Übersicht").is_visible()
        assert page.locator("tr", has_text="desk-missed").get_by_text("ausgelassen").is_visible()
        for link, heading in (("Warnungen", "Warnungen"), ("Prüfprotokoll", "Prüfprotokoll")):
            page.get_by_role("link", name=link).click()
            assert page.get_by_role("heading", name=heading, exact=True).is_visible()
            page.screenshot(path=tmp_path / f"7-{link}.png", full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.goto(f"{server.url}/console/tenants/acme")
        page.screenshot(path=tmp_path / "8-tenant-phone.png", full_page=True)
        # wide tables scroll inside their cards; the page itself does not scroll sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.get_by_role("link", name="English").click()
        page.wait_for_url(f"{server.url}/console/")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.get_by_role("heading", name="Dashboard").is_visible()
    finally:
        context.close()
