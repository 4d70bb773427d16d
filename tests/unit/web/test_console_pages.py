"""The console's audit and alerts pages through Starlette's test client (design 18.4): the
audit log filtered by tenant and kind and paged by a cursor, a tenant admin held to their own
tenant's entries, a cursor that is not a number refused (E156); the alerts page lists what is
failing or overdue and nothing that is fine."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cairn.server.adminops import Actor
from cairn.server.app import create_app, open_services
from cairn.server.context import Services, Settings
from cairn.server.jobresults import JobResult
from cairn.server.users import ConsoleRole, ConsoleUser
from cairn.web.auditpage import PER_PAGE
from cairn.web.console import mount_console

PASSWORD = "correct horse battery staple"


@pytest.fixture
def services(tmp_path: Path) -> Services:
    services = open_services(Settings(data=tmp_path / "data"))
    for name in ("acme", "globex"):
        services.tenants.create(name)
    services.admin.add_user(
        Actor("t"), ConsoleUser("root", ConsoleRole.SERVER_ADMIN, None), PASSWORD
    )
    services.admin.add_user(
        Actor("t"), ConsoleUser("ann", ConsoleRole.TENANT_ADMIN, "acme"), PASSWORD
    )
    return services


def signed_in(services: Services, name: str) -> TestClient:
    client = TestClient(
        mount_console(create_app(services), services), base_url="https://testserver"
    )
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/sign-in").text)
    assert token is not None
    answer = client.post(
        "/console/sign-in",
        data={"csrf": token.group(1), "name": name, "password": PASSWORD},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    return client


def seqs(html: str) -> list[int]:
    return [int(n) for n in re.findall(r"<tr[^>]*><td>(\d+)</td>", html)]


def test_the_audit_log_is_filtered_and_paged(services: Services) -> None:
    for i in range(PER_PAGE + 5):
        services.audit.append("test", "globex", "probe-kind", f"thing-{i}", "ok", "-")
    services.audit.append("test", "acme", "probe-kind", "acme-thing", "CAIRN-E999", "-")
    services.audit.write_through()
    client = signed_in(services, "root")
    first = client.get("/console/audit", params={"kind": "probe-kind"})
    assert first.status_code == 200
    shown = seqs(first.text)
    assert len(shown) == PER_PAGE and shown == sorted(shown, reverse=True)
    assert "Chain " not in first.text and "Verify the chain" in first.text
    assert "Chain intact" in client.get("/console/audit", params={"verify": "1"}).text
    older = re.search(r'href="/console/audit\?([^"]+)" rel="next"', first.text)
    assert older is not None
    second = client.get("/console/audit?" + older.group(1).replace("&amp;", "&"))
    rest = seqs(second.text)
    assert len(rest) == 6 and max(rest) < min(shown)  # the rest, none twice
    assert 'rel="next"' not in second.text
    only_acme = client.get("/console/audit", params={"tenant": "acme", "kind": "probe-kind"})
    assert "acme-thing" in only_acme.text and "thing-0<" not in only_acme.text
    assert 'class="audit-failed"' in only_acme.text


def test_a_tenant_admin_sees_only_their_tenants_entries(services: Services) -> None:
    services.audit.append("test", "globex", "probe-kind", "globex-secret", "ok", "-")
    services.audit.append("test", "acme", "probe-kind", "acme-thing", "ok", "-")
    services.audit.write_through()
    page = signed_in(services, "ann").get("/console/audit", params={"tenant": "globex"})
    assert page.status_code == 200
    assert "acme-thing" in page.text and "globex-secret" not in page.text
    assert "Verify the chain" not in page.text and 'id="tenant"' not in page.text
    asked = signed_in(services, "ann").get("/console/audit", params={"verify": "1"})
    assert "Chain " not in asked.text


@pytest.mark.parametrize("query", [{"before": "x"}, {"before": "-1"}, {"kind": "k" * 101}])
def test_an_unreadable_audit_query_is_refused(services: Services, query: dict[str, str]) -> None:
    answer = signed_in(services, "root").get("/console/audit", params=query)
    assert answer.status_code == 400 and "CAIRN-E156" in answer.text


def test_alerts_list_what_fails_or_is_overdue_and_not_what_is_fine(services: Services) -> None:
    now = int(time.time() * 1000)
    day = 24 * 3600 * 1000

    def result(host: str, outcome: str, due_in: int) -> JobResult:
        return JobResult(
            "home", host, now - 1000, now, outcome, None, 1, 1, None, "",
            schedule="every 1h", next_due_ms=now + due_in, period_ms=3600_000,
        )  # fmt: skip

    services.jobs.record("acme", result("fine", "success", 3600_000), "t")
    services.jobs.record("acme", result("broken", "success", 3600_000), "t")
    services.jobs.record("acme", result("broken", "failure", 3600_000), "t")
    services.jobs.record("acme", result("gone", "success", -day), "t")
    services.jobs.record("globex", result("theirs", "failure", 3600_000), "t")
    root = signed_in(services, "root").get("/console/alerts").text
    for host in ("broken", "gone", "theirs"):
        assert f"<td>{host}</td>" in root
    assert "<td>fine</td>" not in root and "Replication targets that need a look" in root
    ann = signed_in(services, "ann").get("/console/alerts").text
    assert "<td>broken</td>" in ann and "<td>theirs</td>" not in ann
    assert "Replication targets" not in ann
