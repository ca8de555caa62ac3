"""GET /metrics: Prometheus text that parses, counting requests by route, method and status."""

from __future__ import annotations

from arq import ArqRedis
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from ecrm.api.app import create_app
from ecrm.clock import FrozenClock
from ecrm.settings import Settings
from tests.api.conftest import Client
from tests.conftest import REDIS_URL


async def _requests(api: Client) -> dict[tuple[str, str, str], float]:
    resp = await api.get("/metrics")  # no API key: scraped like /health
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    assert {"ecrm_sends", "ecrm_send_chunk_seconds", "ecrm_queue_jobs"} <= set(families)
    return {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
            for s in families["ecrm_http_requests"].samples if s.name == "ecrm_http_requests_total"}


async def test_metrics_count_each_answered_request_by_route_and_status(api: Client, auth: dict[str, str]) -> None:
    before = await _requests(api)
    assert (await api.post("/v1/profiles", json={"external_id": "c-1"}, headers=auth)).status == 201
    assert (await api.post("/v1/profiles", json={"external_id": ""}, headers=auth)).status == 422
    assert (await api.get("/v1/profiles/nobody", headers=auth)).status == 404
    assert (await api.get("/no/such/path/42", headers=auth)).status == 404
    after = await _requests(api)
    grown = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
    assert grown == {("/v1/profiles", "POST", "201"): 1, ("/v1/profiles", "POST", "422"): 1,
                     ("/v1/profiles/{external_id}", "GET", "404"): 1, ("unmatched", "GET", "404"): 1,
                     ("/metrics", "GET", "200"): 1}


async def test_metrics_give_the_number_of_jobs_waiting_in_redis(
        aiohttp_client: AiohttpClient, settings: Settings, clock: FrozenClock, redis: ArqRedis) -> None:
    api = await aiohttp_client(create_app(settings.model_copy(update={"redis_url": REDIS_URL}), clock))
    for n in range(3):
        await redis.enqueue_job("send_batch", n, _job_id=f"job-{n}", _defer_by=3600)
    resp = await api.get("/metrics")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    assert [s.value for s in families["ecrm_queue_jobs"].samples] == [3]
