"""`POST /v1/t/{tenant}/jobs`: an agent reports one run's result (design 15.5)."""

from __future__ import annotations

from dataclasses import replace

from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from cairn.server.admin import read_json
from cairn.server.context import Call
from cairn.server.jobresults import parse_report


async def report_job(call: Call) -> Response:
    result = parse_report(await read_json(call))
    tenant = call.tenant.name
    received = await run_in_threadpool(call.services.jobs.record, tenant, result, call.who.token_id)
    if call.services.alerts is not None:
        call.services.alerts.reported(tenant, replace(result, received_ms=received))
    call.audit("report-job", f"{result.host} {result.job} {result.outcome}"[:400])
    return JSONResponse({"recorded": True}, status_code=201)
