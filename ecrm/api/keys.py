"""Typed keys for what the aiohttp app holds: settings, the clock, the database engine and sessions,
the API-key cache, the group-commit writers, the shop connectors."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from ecrm.api.keycache import ApiKeyCache
from ecrm.api.webhook_writer import WebhookWriter
from ecrm.api.writers import IngestWriters
from ecrm.clock import Clock
from ecrm.queue import JobQueue
from ecrm.segments.touches import Touches
from ecrm.settings import Settings
from ecrm.shops.base import ShopConnector
from ecrm.site.limits import RateLimit

SETTINGS = web.AppKey("settings", Settings)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS: web.AppKey[async_sessionmaker[AsyncSession]] = web.AppKey("sessions")
TOUCHES = web.AppKey("touches", Touches)  # profiles ingest touched, for segment entry and exit
# True: `ecrm serve`'s mapper process maps the webhooks, the API only wakes it (ecrm.shops.mapper)
SHOP_MAPPER = web.AppKey("shop_mapper", bool)
SHOP_JOBS: web.AppKey[JobQueue] = web.AppKey("shop_jobs")  # where webhooks go to be mapped (ecrm.api.webhooks)
SHOP_WEBHOOKS = web.AppKey("shop_webhooks", WebhookWriter)  # stores them, a group commit at a time
SHOP_CONNECTORS: web.AppKey[dict[str, ShopConnector]] = web.AppKey("shop_connectors")  # by provider, built once
SITE_LIMIT = web.AppKey("site_limit", RateLimit)  # the collect endpoint's budget per address (ecrm.api.site)
API_KEYS = web.AppKey("api_keys", ApiKeyCache)
WRITERS = web.AppKey("writers", IngestWriters)
