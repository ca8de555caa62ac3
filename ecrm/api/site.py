"""The site script: `GET /t.js`, and `POST /t/collect`, where it sends what happened on a page.

Both are public (no API key): the script runs in shoppers' browsers. Collect takes only what
a page of an allowed origin (`site.allowed_origins`, from the browser's `Origin` header) sends
with the public site key (`site.key`), at most `site.max_body_bytes` per request and
`site.requests_per_minute` per client address (429 beyond, per API process). The script posts
`text/plain` JSON, a CORS "simple request", so browsers send no preflight; the answer carries
`Access-Control-Allow-Origin` for allowed origins only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cache
from importlib.resources import files

from aiohttp import web

from ecrm.api.keys import CLOCK, SESSIONS, SETTINGS, SITE_LIMIT
from ecrm.api.raw_json import json_object
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.site.collect import CollectIn
from ecrm.site.limits import RateLimit
from ecrm.site.record import SiteIdentityError, record_visit

routes = web.RouteTableDef()


@cache
def script() -> bytes:
    return files("ecrm.site").joinpath("t.js").read_bytes()


@routes.get("/t.js")
@operation("The site script a shop adds to its pages", responses={200: None}, content_type="text/javascript")
async def get_script(request: web.Request) -> web.Response:
    return web.Response(body=script(), content_type="text/javascript", charset="utf-8", headers={
        "Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"})


@routes.post("/t/collect")
@operation("Events from the site script (site key, allowed origins)", CollectIn,
           {204: None, 403: ErrorOut, 404: ErrorOut, 429: ErrorOut,
                       400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_collect(request: web.Request) -> web.Response:
    origin = _allowed_origin(request)
    if not request.app[SITE_LIMIT].allow(request.remote or "", request.app[CLOCK].now().timestamp()):
        raise ApiError(429, "too many requests from this address; try again in a minute")
    _, document = json_object(await _bounded_body(request), request.charset)
    data = CollectIn.model_validate(document)
    if data.k != request.app[SETTINGS].site.key:
        raise ApiError(403, "the site key is not this server's site.key", field="k")
    try:
        async with request.app[SESSIONS].begin() as session:
            await record_visit(session, data, request.app[SETTINGS], request.app[CLOCK].now())
    except SiteIdentityError as exc:
        raise ApiError(403, str(exc), field=exc.field) from None
    return web.Response(status=204, headers={"Access-Control-Allow-Origin": origin, "Vary": "Origin"})


def _allowed_origin(request: web.Request) -> str:
    site = request.app[SETTINGS].site
    if site.key is None:
        raise ApiError(404, "site tracking is off: set site.key and site.allowed_origins")
    origin = request.headers.get("Origin", "")
    if origin not in site.allowed_origins:
        raise ApiError(403, f"pages of {origin[:100] or 'no origin'} may not send events: "
                            "add the shop's origin to site.allowed_origins", field="Origin")
    return origin


async def _bounded_body(request: web.Request) -> bytes:
    limit = request.app[SETTINGS].site.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"the body is larger than the limit of {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, f"the body is larger than the limit of {limit} bytes")
    return raw


async def site_limits(app: web.Application) -> AsyncIterator[None]:
    app[SITE_LIMIT] = RateLimit(app[SETTINGS].site.requests_per_minute)
    yield
