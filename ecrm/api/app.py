"""The aiohttp application: `create_app(settings, clock)`, served by `ecrm serve` and used by the tests.

The database engine lives in a cleanup context, so it opens with the app and is disposed when
the app stops. Middlewares run request counting first (outermost, so it sees the final status),
then errors, then authentication. Handlers read the time from the app's clock (`CLOCK`), which
tests replace with a `FrozenClock`. Request bodies are capped at `api.max_body_bytes` (413).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ecrm.api import (
    batch,
    docs,
    events,
    health,
    messages,
    metrics,
    orders,
    profiles,
    push,
    push_public,
    site,
    twilio_webhooks,
    unsubscribe,
    webhooks,
)
from ecrm.api.auth import auth_middleware
from ecrm.api.errors import error_middleware
from ecrm.api.keycache import ApiKeyCache
from ecrm.api.keys import API_KEYS, CLOCK, ENGINE, SESSIONS, SETTINGS, SHOP_MAPPER, WRITERS
from ecrm.api.logs import quiet_malformed_requests
from ecrm.api.segment_refresh import segment_refresh
from ecrm.api.writers import IngestWriters
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.db import create_engine, session_factory
from ecrm.profiles.ingest_pg import PgIngest
from ecrm.settings import Settings

ROUTES = (health.routes, metrics.routes, profiles.routes, events.routes, orders.routes, unsubscribe.routes,
          push.routes, push_public.routes, twilio_webhooks.routes, batch.routes, messages.routes, docs.routes,
          webhooks.routes, site.routes)


def create_app(settings: Settings, clock: Clock = SYSTEM_CLOCK, *, shop_mapper: bool = False) -> web.Application:
    """The API; with `shop_mapper`, shop webhooks are mapped by a mapper process this app only
    wakes (`ecrm.shops.mapper`), not in this process."""
    quiet_malformed_requests()
    app = web.Application(middlewares=[metrics.metrics_middleware, error_middleware, auth_middleware],
                          client_max_size=settings.api.max_body_bytes)
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[SHOP_MAPPER] = shop_mapper
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(segment_refresh)
    app.cleanup_ctx.append(messages.message_queue)
    app.on_startup.append(docs.build_document)
    app.cleanup_ctx.append(webhooks.shop_jobs)  # after the database: its engine
    app.cleanup_ctx.append(site.site_limits)
    for routes in ROUTES:
        app.add_routes(routes)
    return app


async def _database(app: web.Application) -> AsyncIterator[None]:
    engine = create_engine(app[SETTINGS].database_url)
    app[ENGINE] = engine
    app[SESSIONS] = session_factory(engine)
    app[API_KEYS] = ApiKeyCache(app[SESSIONS])
    url = app[SETTINGS].database_url
    app[WRITERS] = IngestWriters(app[SESSIONS], app[SETTINGS].api.max_traits_bytes,
                                 PgIngest(url) if url.startswith("postgresql") else None)
    health.schema_head()  # read the migrations once, before any request
    yield
    await app[WRITERS].close()
    await engine.dispose()
