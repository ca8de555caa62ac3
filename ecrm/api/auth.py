"""API-key authentication for every route except the health check, metrics and unsubscribe links.

The key comes as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; missing, unknown or
revoked keys get 401 with a JSON `error`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from ecrm.api.apikeys import check_api_key
from ecrm.api.keys import SESSIONS

PUBLIC_ROUTES = frozenset({("GET", "/health"), ("HEAD", "/health"), ("GET", "/metrics"), ("HEAD", "/metrics"),
                           ("GET", "/u/{token}"), ("HEAD", "/u/{token}"), ("POST", "/u/{token}")})


def _is_public(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and (request.method, resource.canonical) in PUBLIC_ROUTES


def presented_key(request: web.Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-Api-Key", "").strip() or None


def _unauthorized(message: str) -> web.Response:
    return web.json_response({"error": message}, status=401, headers={"WWW-Authenticate": 'Bearer realm="ecrm"'})


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if _is_public(request):
        return await handler(request)
    key = presented_key(request)
    if key is None:
        return _unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-Api-Key: <key>'")
    async with request.app[SESSIONS]() as session:
        if await check_api_key(session, key) is None:
            return _unauthorized("the API key is not valid (unknown, mistyped or revoked)")
    return await handler(request)
