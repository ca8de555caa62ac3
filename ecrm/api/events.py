"""`POST /v1/events`: record something a person did; 202 with the new event's id.

An event without `occurred_at` happened when the app's clock received it. Concurrent events
share one transaction (ecrm.api.group_commit); each is answered once its transaction committed.
"""

from __future__ import annotations

from aiohttp import web

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, WRITERS
from ecrm.profiles.ingest import EventIn

routes = web.RouteTableDef()


@routes.post("/v1/events")
async def post_event(request: web.Request) -> web.Response:
    data = await read_model(request, EventIn)
    event_id = await request.app[WRITERS].events.submit((data, request.app[CLOCK].now()))
    return web.json_response({"id": event_id}, status=202)
