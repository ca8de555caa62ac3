"""Recording what the site script sent, in the order it happened: page and product views
become events of the visitor's profile; an identify makes the visitor known (see `visitors`).

Who an identify names: a tracked email link's token proves a profile id; an external id needs
the shop server's signature (`site.identify_secret`; without that setting it is refused, since
anybody can run the script); an email the visitor typed attaches them to the profile with that
email, or, when there is none, is written on their anonymous profile (no consent comes with it).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.errors import EcrmError
from ecrm.profiles.ingest import ensure_profile
from ecrm.profiles.models import Event, Profile
from ecrm.settings import Settings
from ecrm.site.collect import CollectIn, Identify, event_properties
from ecrm.site.identity import read_click_token, signature_matches
from ecrm.site.visitors import ANONYMOUS, become_known, visitor_profile


class SiteIdentityError(EcrmError):
    """An identify the server cannot trust: names the field (403 over HTTP)."""

    def __init__(self, message: str, field: str) -> None:
        self.field = field
        super().__init__(message)


async def record_visit(session: AsyncSession, data: CollectIn, settings: Settings, now: datetime) -> int:
    """Write `data` at `now`; how many events were stored."""
    stored = 0
    for index, event in enumerate(data.events):
        if isinstance(event, Identify):
            target = await _identified(session, data.v, event, settings, f"events.{index}", now)
            if target is not None:
                await become_known(session, data.v, target, now)
            continue
        name, properties = event_properties(event)
        session.add(Event(profile_id=await visitor_profile(session, data.v, now), name=name,
                          properties=properties, occurred_at=now, received_at=now))
        stored += 1
    await session.flush()
    return stored


async def _identified(session: AsyncSession, visitor_id: str, event: Identify, settings: Settings, where: str,
                      now: datetime) -> int | None:
    """The profile id the identify names (None: it stays on the visitor's own profile)."""
    if event.click is not None:
        profile_id = read_click_token(settings.secret_key, event.click)
        if profile_id is None:
            raise SiteIdentityError("the tracked link's token is not valid", f"{where}.click")
        return await session.scalar(select(Profile.id).where(Profile.id == profile_id))  # None: erased since
    if event.external_id is not None:
        _check_signature(event, settings, where)
        return (await ensure_profile(session, event.external_id, now))[0]
    if event.email is not None:
        return await _by_email(session, visitor_id, event.email, now)
    return None


def _check_signature(event: Identify, settings: Settings, where: str) -> None:
    secret = settings.site.identify_secret
    if secret is None:
        raise SiteIdentityError("identify by external_id needs site.identify_secret (ECRM_SITE__IDENTIFY_SECRET) "
                                "and a signature from the shop's server", f"{where}.external_id")
    if event.external_id is None or not event.signature \
            or not signature_matches(secret.get_secret_value(), event.external_id, event.signature):
        raise SiteIdentityError("the signature does not match the external_id", f"{where}.signature")


async def _by_email(session: AsyncSession, visitor_id: str, email: str, now: datetime) -> int | None:
    found = await session.scalar(select(Profile.id).where(Profile.email == email).order_by(Profile.id).limit(1))
    if found is not None:
        return found
    own = await visitor_profile(session, visitor_id, now)  # a known profile's email is not the page's to change
    await session.execute(update(Profile).where(Profile.id == own, Profile.external_id == ANONYMOUS + visitor_id)
                          .values(email=email, updated_at=now))
    return None
