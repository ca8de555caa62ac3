"""Stage 7: what a person texts back to our number (`POST /webhooks/twilio/inbound`).

Twilio's standard opt-out keywords (STOP and the others below, any case, surrounding spaces
ignored: https://help.twilio.com/articles/223134027) turn SMS consent off for every profile
with that number, and START, YES or UNSTOP turn it back on, the source naming the keyword. HELP
is answered with the configured help text. Anything else is the person's reply: an `sms_reply`
event on the profile that was last sent an SMS at that number, linked to that delivery.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ecrm.deliveries.models import Delivery
from ecrm.profiles.consent import ConsentChange, set_consents
from ecrm.profiles.models import Event, Profile
from ecrm.types import ChannelKind, ConsentState

logger = logging.getLogger(__name__)
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = "HELP"
REPLY_EVENT = "sms_reply"


class Keyword(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    NONE = "none"


def keyword_of(body: str) -> Keyword:
    word = body.strip().upper()
    if word in OPT_OUT:
        return Keyword.OPT_OUT
    if word in OPT_IN:
        return Keyword.OPT_IN
    return Keyword.HELP if word == HELP else Keyword.NONE


async def set_sms_consent(session: AsyncSession, phone: str, state: ConsentState, source: str,
                          now: datetime) -> int:
    """Set SMS consent for every profile with `phone`; return how many."""
    profile_ids = list(await session.scalars(select(Profile.id).where(Profile.phone == phone)))
    await set_consents(session, [ConsentChange(p, ChannelKind.SMS, state, source) for p in profile_ids], now)
    return len(profile_ids)


async def record_reply(session: AsyncSession, phone: str, body: str, message_sid: str, now: datetime) -> int | None:
    """An `sms_reply` event on the profile last texted at `phone` (linked to that delivery), or
    on the first profile with that number if none was; None when no profile has it."""
    last = (await session.execute(
        select(Delivery.id, Delivery.profile_id).join(Profile, Profile.id == Delivery.profile_id)
        .where(Profile.phone == phone, Delivery.channel == ChannelKind.SMS.value, Delivery.sent_at.is_not(None))
        .order_by(Delivery.sent_at.desc(), Delivery.id.desc()).limit(1))).one_or_none()
    delivery_id, profile_id = last if last is not None else (None, await session.scalar(
        select(Profile.id).where(Profile.phone == phone).order_by(Profile.id).limit(1)))
    if profile_id is None:
        logger.info("an SMS reply from a number no profile has was not recorded")
        return None
    session.add(Event(profile_id=profile_id, name=REPLY_EVENT, occurred_at=now, received_at=now,
                      properties={"body": body, "message_sid": message_sid, "delivery_id": delivery_id}))
    return profile_id
