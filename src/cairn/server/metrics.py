"""What the server tells its operator: Prometheus metrics and one structured log line a request.

Metrics live in a registry of their own (not the process-wide default), so tests can build many
apps in one process. Tenant gauges are read from the database when scraped, so they are never
stale. The scrape needs a server-admin token: tenant names are not for everyone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from cairn.core.clock import SYSTEM_CLOCK, Clock
from cairn.replication.status import State, target_status
from cairn.replication.targets import TargetStore
from cairn.server.tenants import TenantStore

log = logging.getLogger("cairn.server.requests")


class TenantCollector(Collector):
    def __init__(self, tenants: TenantStore) -> None:
        self._tenants = tenants

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily("cairn_tenant_used_bytes", "stored bytes", labels=["tenant"])
        quota = GaugeMetricFamily(
            "cairn_tenant_quota_bytes", "quota (absent: none)", labels=["tenant"]
        )
        for tenant in self._tenants.all():
            used.add_metric([tenant.name], tenant.used)
            if tenant.quota is not None:
                quota.add_metric([tenant.name], tenant.quota)
        yield used
        yield quota


class TargetCollector(Collector):
    """Each replication target's status (design 17.12), read from the database when scraped."""

    GAUGES = (
        ("lag_seconds", "age of the oldest change not yet replicated", "lag_s"),
        ("lag_bytes", "bytes of the changes not yet replicated", "lag_bytes"),
        ("pending_objects", "changes not yet replicated", "lag_objects"),
        ("sent_bytes", "bytes sent, over the recorded runs", "bytes_sent"),
        ("sent_objects", "objects sent, over the recorded runs", "objects_sent"),
        ("failures", "failed runs in a row", "failures"),
        ("quarantine_bytes", "deletions waiting on the target (mirror)", "quarantine_bytes"),
    )

    def __init__(self, targets: TargetStore, tenants: TenantStore, clock: Clock) -> None:
        self._targets = targets
        self._tenants = tenants
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            field: GaugeMetricFamily(f"cairn_replication_{name}", text, labels=["target"])
            for name, text, field in self.GAUGES
        }
        state = GaugeMetricFamily(
            "cairn_replication_state", "1 for the target's state", labels=["target", "state"]
        )
        success = GaugeMetricFamily(
            "cairn_replication_last_success_seconds",
            "end of the last good run, seconds since the epoch (absent: never)",
            labels=["target"],
        )
        ids = {t.name: t.id for t in self._tenants.all()}
        now = self._clock.now()
        for target in self._targets.list():
            status = target_status(self._targets.db, target, now, ids)
            for field, family in families.items():
                family.add_metric([target.name], float(getattr(status, field)))
            for each in State:
                state.add_metric([target.name, each.value], float(status.state is each))
            if status.last_success_ms is not None:
                success.add_metric([target.name], status.last_success_ms / 1000)
        yield from families.values()
        yield state
        yield success


class Metrics:
    def __init__(
        self,
        tenants: TenantStore,
        targets: TargetStore | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cairn_requests",
            "requests answered",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "cairn_request_seconds",
            "time to answer",
            ["route", "method"],
            registry=self.registry,
        )
        self.bytes_in = Counter(
            "cairn_received_bytes", "object bytes stored", registry=self.registry
        )
        self.registry.register(TenantCollector(tenants))
        if targets is not None:
            self.registry.register(TargetCollector(targets, tenants, clock))

    def observe(self, route: str, method: str, status: int, elapsed: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.seconds.labels(route, method).observe(elapsed)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def log_request(
    method: str, route: str, path: str, status: int, elapsed: float, who: str, address: str
) -> None:
    """One JSON line a request: what an operator greps and a log shipper parses."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            json.dumps(
                {
                    "event": "request",
                    "method": method,
                    "route": route,
                    "path": path,
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                    "token": who,
                    "address": address,
                }
            )
        )
