"""Who is in a named segment, as one query: the segment's rule alone, or, for a channel, the
audience a campaign on that channel would get (an address, and consent unless the segment says
`consent: ignore`).

A named segment is a set of people, not an audience of one channel: its membership (and the
`segment_entered` / `segment_exited` events, `ecrm.segments.refresh`) takes the rule only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, select, true

from ecrm.profiles.models import Profile
from ecrm.segments.compile import compile_audience, compile_rule
from ecrm.segments.rules import Audience
from ecrm.types import ChannelKind


def rule_condition(audience: Audience, now: datetime) -> ColumnElement[bool]:
    """The audience's rule tree as a WHERE condition over `profiles`, channel and consent aside."""
    return compile_rule(audience.root(), now)


def member_query(audience: Audience, now: datetime, channel: ChannelKind | None = None) -> Select[int]:
    """Profile ids matching the audience as of `now`, in id order; with `channel`, only those a
    campaign on it would reach."""
    if channel is not None:
        return compile_audience(audience, channel, now)
    return select(Profile.id).where(and_(true(), rule_condition(audience, now))).order_by(Profile.id)

