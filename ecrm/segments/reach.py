"""Whether a profile can be reached on a channel, as SQL conditions over `profiles`.

Reachable means an address on the channel that is not known to be bad: an email address; a
phone number not marked `phone_invalid`; a push subscription not marked invalid. Consent is a
separate condition (`has_consent`): an audience requires it unless it says `consent: ignore`,
and `reachable:` rules and channel fallback require both.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, exists

from ecrm.profiles.models import Consent, Profile
from ecrm.push.models import PushSubscription
from ecrm.types import ChannelKind, ConsentState


def has_address(channel: ChannelKind) -> ColumnElement[bool]:
    if channel is ChannelKind.EMAIL:
        return Profile.email.is_not(None)
    if channel is ChannelKind.SMS:
        return and_(Profile.phone.is_not(None), Profile.phone_invalid.is_(None))
    return exists().where(PushSubscription.profile_id == Profile.id, PushSubscription.invalid_at.is_(None))


def has_consent(channel: ChannelKind) -> ColumnElement[bool]:
    return exists().where(
        Consent.profile_id == Profile.id, Consent.channel == channel.value, Consent.state == ConsentState.GRANTED.value
    )


def reachable(channel: ChannelKind) -> ColumnElement[bool]:
    """An address on `channel` and its consent granted."""
    return and_(has_address(channel), has_consent(channel))
