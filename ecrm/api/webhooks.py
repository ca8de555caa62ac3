"""`POST /webhooks/{provider}`: a shop's webhook, verified, stored, acknowledged, mapped later.

The route is public (no API key): the shop's signature is the proof. The order matters: the
signature is checked over the raw body before anything is parsed, the body must be a UTF-8
JSON object within the depth limit, and the row is committed before the 2xx, so a shop never
hears "received" for something not stored. Concurrent deliveries share that commit (the group
commit of `webhook_writer`). A redelivery (same delivery id), even one in the same commit, is
answered 200 and not stored again. Mapping runs as `map_webhooks` jobs, at most one per
`webhook_writer.MapKicker` interval: on the worker with Redis; without it, in `ecrm serve`'s
mapper process, which the job wakes (`shops.mapper`, on PostgreSQL with `--workers` > 1), else
in this process, less often (`IN_PROCESS_KICK`), so that the mapping, which shares the loop with
the acknowledgements, interrupts them seldom. A job lost with a dead process, or never queued
(Redis down), is mapped by `ecrm shop retry`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ecrm.api.keys import CLOCK, ENGINE, SESSIONS, SETTINGS, SHOP_CONNECTORS, SHOP_JOBS, SHOP_MAPPER, SHOP_WEBHOOKS
from ecrm.api.raw_json import json_object_text
from ecrm.api.spec import ErrorOut, operation
from ecrm.api.webhook_writer import KICK_INTERVAL, WebhookWriter
from ecrm.errors import ApiError, WebhookPayloadError, WebhookSignatureError
from ecrm.queue import InProcessQueue, JobQueue, LazyArqQueue
from ecrm.runtime import open_runtime
from ecrm.shops.base import ShopConnector
from ecrm.shops.jobs import MAP_JOB, map_webhooks_job
from ecrm.shops.mapper import NotifyQueue
from ecrm.shops.registry import CONNECTORS
from ecrm.shops.store import WebhookWrite
from ecrm.shops.store_pg import PgWebhookStore

routes = web.RouteTableDef()
IN_PROCESS_KICK = 1.0  # seconds between two mapping jobs in this process while webhooks arrive


@routes.post("/webhooks/{provider}")
@operation("A shop's webhook (shopify, woocommerce), signed by the shop; stored, then mapped",
           responses={200: None, 401: ErrorOut, 404: ErrorOut,
                       400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_webhook(request: web.Request) -> web.Response:
    connector = _connector(request)
    raw = await _raw_body(request)
    if connector.is_ping(raw, request.headers):
        return web.json_response({"ok": True, "stored": False})
    try:
        connector.verify(raw, request.headers)
        delivery = connector.delivery(request.headers)
    except WebhookSignatureError as exc:
        raise ApiError(401, str(exc)) from None
    except WebhookPayloadError as exc:
        raise ApiError(400, str(exc), field=exc.field) from None
    body = json_object_text(raw, request.charset)
    write = WebhookWrite(connector.provider, delivery, body, request.app[CLOCK].now())
    webhook_id = await request.app[SHOP_WEBHOOKS].submit(write)
    if webhook_id is None:
        return web.json_response({"ok": True, "duplicate": True})
    return web.json_response({"ok": True, "id": webhook_id})


def _connector(request: web.Request) -> ShopConnector:
    provider = request.match_info["provider"]
    connector = request.app[SHOP_CONNECTORS].get(provider)
    if connector is None:
        raise ApiError(404, f"no shop connector is named {provider[:40]!r}; the shops are {', '.join(CONNECTORS)}")
    return connector


async def _raw_body(request: web.Request) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(413, f"the body is larger than the limit of {request.client_max_size} bytes") from exc


async def shop_jobs(app: web.Application) -> AsyncIterator[None]:
    """The connectors (built once: settings do not change while the app runs), the queue the
    mapping jobs go to (arq's with Redis, else a NOTIFY to the mapper process, else this
    process's own) and the writer that stores webhooks, which on the way out stores what is
    pending before the queue closes."""
    settings = app[SETTINGS]
    app[SHOP_CONNECTORS] = {provider: factory(settings) for provider, factory in CONNECTORS.items()}
    if settings.redis_url or app[SHOP_MAPPER]:
        elsewhere = LazyArqQueue(settings.redis_url) if settings.redis_url else NotifyQueue(settings.database_url)
        writer = _writer(app, elsewhere, KICK_INTERVAL)
        yield
        await writer.close()
        await elsewhere.close()
        return
    queue = InProcessQueue({MAP_JOB: map_webhooks_job}, max_tries=1, clock=app[CLOCK])
    queue.ctx["runtime"] = runtime = open_runtime(settings, queue, engine=app[ENGINE], clock=app[CLOCK])
    writer = _writer(app, queue, IN_PROCESS_KICK)
    yield
    await writer.close()
    await queue.join()
    await runtime.close()


def _writer(app: web.Application, jobs: JobQueue, kick_interval: float) -> WebhookWriter:
    url = app[SETTINGS].database_url
    pg = PgWebhookStore(url) if url.startswith("postgresql") else None
    app[SHOP_JOBS] = jobs
    app[SHOP_WEBHOOKS] = writer = WebhookWriter(app[SESSIONS], jobs, pg, kick_interval)
    return writer
