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


class Metrics:
    def __init__(self, tenants: TenantStore) -> None:
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
