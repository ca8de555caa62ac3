"""`/u/{token}`: the List-Unsubscribe link (RFC 8058), public and answered in HTML.

GET only shows a confirmation form, because mail scanners fetch links; POST (the one-click
`List-Unsubscribe=One-Click` body, our own form, or an empty body) withdraws email consent.
"""

from __future__ import annotations

from aiohttp import web

from ecrm.api.keys import CLOCK, SESSIONS, SETTINGS
from ecrm.api.spec import operation
from ecrm.feedback.apply import apply_unsubscribe
from ecrm.feedback.unsubscribe import InvalidTokenError, read_token

routes = web.RouteTableDef()
SOURCE = "unsubscribe-link"
MAX_ID = 2**63 - 1  # ids are 64-bit signed integers on both databases

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
<h1>{title}</h1>
{content}
</body></html>
"""
CONFIRM = """<p>Do you want to stop receiving these emails?</p>
<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button></form>"""
DONE = "<p>You will not receive these emails any more.</p>"
INVALID = "<p>This unsubscribe link is not valid. Please use the link from the latest email you received.</p>"


def _page(title: str, content: str, status: int = 200) -> web.Response:
    # no-referrer: the token in our URL must not travel to other sites.
    headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    return web.Response(text=PAGE.format(title=title, content=content), status=status,
                        content_type="text/html", headers=headers)


def _ids(request: web.Request) -> tuple[int, int] | None:
    """The token's (delivery id, profile id), or None when it is not ours or names an id that
    cannot exist (a signed token is 64 unsigned bits per id; a row id fits in 63)."""
    try:
        ids = read_token(request.app[SETTINGS].secret_key, request.match_info["token"])
    except InvalidTokenError:
        return None
    return ids if max(ids) <= MAX_ID else None


@routes.get("/u/{token}")
@operation("The unsubscribe page of an email's link (HTML)", responses={200: None, 400: None},
           content_type="text/html")
async def get_unsubscribe(request: web.Request) -> web.Response:
    if _ids(request) is None:
        return _page("Link not valid", INVALID, status=400)
    return _page("Unsubscribe", CONFIRM)


@routes.post("/u/{token}")
@operation("Unsubscribe (RFC 8058 one-click, or the page's button); HTML", responses={200: None, 400: None},
           content_type="text/html")
async def post_unsubscribe(request: web.Request) -> web.Response:
    ids = _ids(request)
    if ids is None:
        return _page("Link not valid", INVALID, status=400)
    delivery_id, profile_id = ids
    async with request.app[SESSIONS].begin() as session:
        await apply_unsubscribe(session, delivery_id, profile_id, SOURCE, request.app[CLOCK].now())
    return _page("You are unsubscribed", DONE)
