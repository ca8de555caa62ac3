"""`/v1/profiles`: upsert a profile (201 when created, 200 when updated), read one back, erase one."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.api.body import read_model
from ecrm.api.keys import CLOCK, SESSIONS
from ecrm.errors import ApiError
from ecrm.profiles.consent import load_consents
from ecrm.profiles.erase import erase_profile
from ecrm.profiles.ingest import ProfileIn, find_profile, upsert_profile
from ecrm.profiles.models import Consent, Profile

routes = web.RouteTableDef()


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


@routes.post("/v1/profiles")
async def post_profile(request: web.Request) -> web.Response:
    data = await read_model(request, ProfileIn)
    async with request.app[SESSIONS].begin() as session:
        profile, created = await upsert_profile(session, data, request.app[CLOCK].now())
        body = profile_json(profile, await load_consents(session, profile.id))
    if not created:
        return web.json_response(body)
    location = f"/v1/profiles/{quote(profile.external_id, safe='')}"
    return web.json_response(body, status=201, headers={"Location": location})


@routes.get("/v1/profiles/{external_id}")
async def get_profile(request: web.Request) -> web.Response:
    async with request.app[SESSIONS]() as session:
        profile = await _existing(session, request.match_info["external_id"])
        return web.json_response(profile_json(profile, await load_consents(session, profile.id)))


@routes.delete("/v1/profiles/{external_id}")
async def delete_profile(request: web.Request) -> web.Response:
    """Erase the profile with its consents, events, deliveries and responses: 204."""
    async with request.app[SESSIONS].begin() as session:
        profile = await _existing(session, request.match_info["external_id"])
        await erase_profile(session, profile.id)
    return web.Response(status=204)


async def _existing(session: AsyncSession, external_id: str) -> Profile:
    profile = await find_profile(session, external_id)
    if profile is None:
        raise ApiError(404, f"no profile has external_id {external_id!r}", field="external_id")
    return profile
