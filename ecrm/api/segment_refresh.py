"""The API's part in segment entry and exit (`ecrm.segments.refresh`), a cleanup context:
`TOUCHES` collects the profiles each event or order touched and hands them on (an arq job, or
a refresh in this process without Redis); without Redis the app also refreshes whole segments
on its clock every `segment_refresh_minutes`, as arq's cron does on the workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from ecrm.api.keys import CLOCK, SESSIONS, SETTINGS, TOUCHES
from ecrm.segments.handover import EnqueueTouched, RefreshTouched
from ecrm.segments.schedule import refresh_periodically
from ecrm.segments.touches import Touches


async def segment_refresh(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    handover = (EnqueueTouched(settings.redis_url) if settings.redis_url
                else RefreshTouched(settings, app[SESSIONS], app[CLOCK]))
    app[TOUCHES] = touches = Touches(handover)
    ticker = None if settings.redis_url else asyncio.create_task(
        refresh_periodically(settings, app[SESSIONS], app[CLOCK]))
    yield
    if ticker is not None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    await touches.close()
    await handover.close()
