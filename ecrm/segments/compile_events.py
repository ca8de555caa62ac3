"""Event rules in SQL: each is membership (`ecrm.segments.membership`) in one query over events,
true or false for every profile (never NULL), so `not:` needs nothing more.

    {event: A, within: 2h, count: {gte: 2}, where: [...]}   A's matching events counted per profile
    {event: A, then_not: B, within: 2h}                     some A at least 2 h old with no B at or
                                                            after it and at most 2 h later (A itself
                                                            is not a B that followed it)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, not_, select
from sqlalchemy.orm import aliased

from ecrm.profiles.models import Event, Profile
from ecrm.segments.comparisons import json_compare
from ecrm.segments.membership import member
from ecrm.segments.periods import PlusSeconds, in_period
from ecrm.segments.rules import PropertyTest, Rule
from ecrm.segments.values import parse_duration
from ecrm.segments.vocabulary import AT_LEAST_ONCE

_COUNTS: dict[str, Any] = {
    "gte": lambda c, n: c >= n, "gt": lambda c, n: c > n, "lte": lambda c, n: c <= n,
    "lt": lambda c, n: c < n, "eq": lambda c, n: c == n,
}


def event_condition(rule: Rule, now: datetime) -> ColumnElement[bool]:
    if rule.then_not is not None:
        return _sequence(rule, now)
    name, wanted = (rule.count or AT_LEAST_ONCE).test()
    assert wanted is not None
    holds = _COUNTS[name]
    matching = _matching(rule, now)
    if holds(0, wanted):  # a profile with no such event is in: leave out those whose count fails
        counted = matching.group_by(Event.profile_id).having(not_(holds(func.count(), wanted)))
        return not_(member(counted))
    if holds(1, wanted) and name != "eq":  # at least once
        return member(matching)
    return member(matching.group_by(Event.profile_id).having(holds(func.count(), wanted)))


def _matching(rule: Rule, now: datetime) -> Select[Any]:
    """Ids of the profiles with an event of the rule's name in its period meeting `where`."""
    query = select(Event.profile_id).where(Event.name == rule.event, *in_period(Event.occurred_at, rule, now,
                                                                                Profile.time_zone))
    if rule.window is not None:  # the window's start depends on the profile's zone
        query = query.join(Profile, Profile.id == Event.profile_id)
    return query.where(*where_conditions(rule.where or [], Event.properties, now))


def where_conditions(tests: list[PropertyTest], properties: Any, now: datetime) -> list[ColumnElement[bool]]:
    return [json_compare(test.field.removeprefix("properties."), test.op, test.value, now, properties)
            for test in tests]


def _sequence(rule: Rule, now: datetime) -> ColumnElement[bool]:
    gap = parse_duration(rule.within or "0s")
    first, then = aliased(Event), aliased(Event)
    # the same event cannot follow itself; with two names no row is both (and without the id
    # each side is read from the (name, occurred_at, profile_id) index alone)
    itself = [then.id != first.id] if rule.then_not == rule.event else []
    followed = exists().where(
        then.profile_id == first.profile_id, then.name == rule.then_not, *itself,
        then.occurred_at >= first.occurred_at,
        then.occurred_at <= PlusSeconds(first.occurred_at, int(gap.total_seconds())),
    )
    query = select(first.profile_id).where(
        first.name == rule.event, first.occurred_at <= now - gap, not_(followed),
        *where_conditions(rule.where or [], first.properties, now),
    )
    return member(query)
