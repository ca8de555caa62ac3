"""`POST /v1/events`: record something a person did; 202 with the new event's id.

An event without `occurred_at` happened when the app's clock received it. Concurrent events
share one transaction (ecrm.api.group_commit); each is answered once its transaction committed.
"""

from __future__ import annotations

from aiohttp import web

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, TOUCHES, WRITERS
from ecrm.api.spec import ErrorOut, operation
from ecrm.profiles.ingest import EventIn

routes = web.RouteTableDef()


@routes.post("/v1/events")
@operation("Record an event (a cart event's properties are a cart)", EventIn,
           {202: None, 400: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_event(request: web.Request) -> web.Response:
    data = await read_model(request, EventIn)
    event_id, profile_id = await request.app[WRITERS].events.submit((data, request.app[CLOCK].now()))
    request.app[TOUCHES].touch(profile_id)  # committed: its segments may have changed
    return web.json_response({"id": event_id}, status=202)
