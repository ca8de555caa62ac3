"""`POST /v1/events`: record something a person did; 202 with the new event's id.

An event without `occurred_at` happened when the app's clock received it.
"""

from __future__ import annotations

from aiohttp import web

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, SESSIONS, TOUCHES
from ecrm.api.spec import ErrorOut, operation
from ecrm.profiles.ingest import EventIn, record_event

routes = web.RouteTableDef()


@routes.post("/v1/events")
@operation("Record an event (a cart event's properties are a cart)", EventIn,
           {202: None, 400: ErrorOut, 409: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_event(request: web.Request) -> web.Response:
    data = await read_model(request, EventIn)
    async with request.app[SESSIONS].begin() as session:
        event = await record_event(session, data, request.app[CLOCK].now())
    request.app[TOUCHES].touch(event.profile_id)  # committed: its segments may have changed
    return web.json_response({"id": event.id}, status=202)
