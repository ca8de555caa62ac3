"""`/v1/profiles`: upsert a profile (201 when created, 200 when updated), read one back, erase one.

A profile's traits, merged with an update's, must fit in `api.max_traits_bytes` of JSON: an
update that would grow them past it is refused with 422 and changes nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, SESSIONS, TOUCHES, WRITERS
from ecrm.api.path_ids import could_be_stored
from ecrm.api.spec import ErrorOut, operation
from ecrm.errors import ApiError
from ecrm.profiles.consent import load_consents
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import ProfileIn, StoredProfile, find_profile
from ecrm.profiles.models import Consent, Profile

routes = web.RouteTableDef()
MAX_EXTERNAL_ID = 200  # as ingest's Text


def profile_json(profile: Profile, consents: list[Consent]) -> dict[str, Any]:
    return {
        "external_id": profile.external_id,
        "email": profile.email,
        "phone": profile.phone,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
        "locale": profile.locale,
        "time_zone": profile.time_zone,
        "traits": profile.traits,
        "consent": {c.channel: {"state": c.state, "source": c.source, "updated_at": c.updated_at.isoformat()}
                    for c in consents},
        "created_at": profile.created_at.isoformat(),
        "updated_at": profile.updated_at.isoformat(),
    }


def stored_json(stored: StoredProfile) -> dict[str, Any]:
    """`profile_json` of a profile as an upsert left it."""
    values = stored.values
    return {
        **{name: values[name] for name in ("external_id", "email", "phone", "first_name", "last_name", "locale",
                                           "time_zone", "traits")},
        "consent": {channel: {"state": state, "source": source, "updated_at": at.isoformat()}
                    for channel, (state, source, at) in sorted(stored.consents.items())},
        "created_at": values["created_at"].isoformat(),
        "updated_at": values["updated_at"].isoformat(),
    }


@routes.post("/v1/profiles")
@operation("Create or update a profile by external_id (traits merge)", ProfileIn,
           {200: None, 201: None, 400: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def post_profile(request: web.Request) -> web.Response:
    """Concurrent upserts share one transaction (ecrm.api.group_commit), applied in arrival
    order; each is answered once its transaction committed."""
    data = await read_model(request, ProfileIn)
    stored = await request.app[WRITERS].profiles.submit((data, request.app[CLOCK].now()))
    request.app[TOUCHES].touch(stored.profile_id)  # committed: its segments may have changed
    body = stored_json(stored)
    if not stored.created:
        return web.json_response(body)
    location = f"/v1/profiles/{quote(data.external_id, safe='')}"
    return web.json_response(body, status=201, headers={"Location": location})


@routes.get("/v1/profiles/{external_id}")
@operation("Read a profile with its consents", responses={200: None, 404: ErrorOut})
async def get_profile(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        profile = await _existing(session, request.match_info["external_id"])
        return web.json_response(profile_json(profile, await load_consents(session, profile.id)))


@routes.delete("/v1/profiles/{external_id}")
@operation("Erase a profile with its consents, events, orders, deliveries and responses",
           responses={204: None, 404: ErrorOut})
async def delete_profile(request: web.Request) -> web.Response:
    """Erase the profile with its consents, events, deliveries and responses: 204."""
    async with request.app[SESSIONS].begin() as session:
        profile = await _existing(session, request.match_info["external_id"])
        await erase_profile(session, profile.id)
    return web.Response(status=204)


async def _existing(session: AsyncSession, external_id: str) -> Profile:
    # An id no profile can have (NUL, a lone surrogate, too long) is not looked up: PostgreSQL refuses NUL.
    profile = await find_profile(session, external_id) if could_be_stored(external_id, MAX_EXTERNAL_ID) else None
    if profile is None:
        raise ApiError(404, f"no profile has external_id {external_id!r}", field="external_id")
    return profile

