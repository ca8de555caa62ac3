"""Channel fallback: a campaign with `channels: [push, sms, email]` gives each profile the first
channel on which it is reachable (`segments.reach`) and, unless the audience says
`consent: ignore`, consented. The run has one send per channel, and each channel's audience is
the campaign's audience, reachable on that channel, reachable on none before it, and not yet
planned into another of the run's sends: every profile lands in exactly one send. The last
condition keeps a re-launch idempotent when reachability changed in between (a profile planned
for email that has since subscribed to push stays with email). With one channel this is the
plain audience query.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, exists, not_, or_

from ecrm.deliveries.models import DELIVERIES
from ecrm.profiles.models import Profile
from ecrm.segments.compile import compile_audience
from ecrm.segments.reach import has_address, reachable
from ecrm.segments.rules import Audience, ConsentPolicy
from ecrm.types import ChannelKind


def channel_audience(audience: Audience, kinds: Sequence[ChannelKind], index: int, now: datetime,
                     other_sends: Sequence[int] = ()) -> Select[int]:
    """Profile ids (in id order) planned into the send of `kinds[index]`."""
    query = compile_audience(audience, kinds[index], now)
    earlier = [_reach(audience, kind) for kind in kinds[:index]]
    if earlier:
        query = query.where(not_(or_(*earlier)))
    if other_sends:
        d = DELIVERIES.c
        query = query.where(~exists().where(d.profile_id == Profile.id, d.send_id.in_(list(other_sends))))
    return query


def _reach(audience: Audience, kind: ChannelKind) -> ColumnElement[bool]:
    return reachable(kind) if audience.consent is ConsentPolicy.REQUIRED else has_address(kind)
