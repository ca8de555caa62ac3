"""Metric rules in SQL, from orders (cancelled and refunded ones left out) and engagement.

Each metric is membership (`ecrm.segments.membership`) in one query grouped by profile; when
the rule holds for a profile with no orders at all (`orders_count lt 2`, `total_spent lte 100`)
it is the profiles *not* in the groups that fail it. So the result is never NULL, and each
table is read once, not once per profile.

Money is exact (`ecrm.segments.money_sql`): sums of stored integers of 1/10,000, compared with
the rule's value x 10^4 x 10^k (the rates' scale). An average is compared as sum >= value x
count, never divided.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Numeric, Select, and_, false, func, literal, not_, or_, select, true, union_all

from ecrm.feedback.models import Response
from ecrm.orders.models import Order
from ecrm.orders.money import MONEY_SCALE
from ecrm.profiles.models import Event, Profile
from ecrm.segments.comparisons import compare, time_compare
from ecrm.segments.membership import member
from ecrm.segments.money_sql import money_sum, money_units
from ecrm.segments.periods import in_period
from ecrm.segments.rfm import quintile_condition
from ecrm.segments.rules import Rule
from ecrm.segments.values import Op
from ecrm.segments.vocabulary import COUNTED_ORDERS, ENGAGEMENTS, QUINTILE_METRICS, Metric


def metric_condition(rule: Rule, now: datetime) -> ColumnElement[bool]:
    metric = rule.metric
    if metric in QUINTILE_METRICS or metric is Metric.RFM:
        return quintile_condition(rule, now)
    if metric is Metric.DAYS_SINCE_LAST_ENGAGEMENT:
        engaged = _engagements(rule, now)
        if rule.op in (Op.LTE, Op.LT):
            return _recent(select(engaged.c.profile_id), engaged.c.at, rule.op, rule.value, now)
        return _grouped(select(engaged.c.profile_id), _days_since(func.max(engaged.c.at), rule.op, rule.value, now),
                        empty=rule.op is Op.NOT_EXISTS)
    shape = _order_metric(rule, now)
    if not isinstance(shape, tuple):
        return shape
    test, empty = shape
    return _grouped(_orders(rule, now), test, empty=empty)


def order_group(rule: Rule, now: datetime) -> tuple[Hashable, ColumnElement[bool]] | None:
    """A metric rule that is a test over the profile's counted orders which a profile without
    orders fails, as (what its orders are, the test): siblings with the same orders are
    tested in one grouping of them (`grouped_members`), one pass over the orders instead of
    one per rule. None for any other rule."""
    if rule.metric not in ORDER_METRICS:
        return None
    shape = _order_metric(rule, now)
    if not isinstance(shape, tuple) or shape[1]:
        return None
    between = tuple(rule.between) if rule.between is not None else None
    return (rule.within, between, rule.window, rule.currency), shape[0]


def grouped_members(rule: Rule, tests: list[ColumnElement[bool]], now: datetime, *,
                    every: bool) -> ColumnElement[bool]:
    """Profiles whose counted orders (those of `rule`'s period and currency) pass every test
    (`every`) or any of them."""
    joined = and_(*tests) if every else or_(*tests)
    return _grouped(_orders(rule, now), joined, empty=False)


def _order_metric(rule: Rule, now: datetime) -> ColumnElement[bool] | tuple[ColumnElement[bool], bool]:
    """An order metric as a whole condition where it needs no grouping (a count or a total
    always exists; a recent order is a range of the time index), else as the test over one
    profile's group of orders and whether a profile with no orders passes it."""
    metric = rule.metric
    if rule.op in (Op.EXISTS, Op.NOT_EXISTS) and metric in _NEVER_EMPTY:
        return true() if rule.op is Op.EXISTS else false()
    if metric is Metric.DAYS_SINCE_LAST_ORDER and rule.op in (Op.LTE, Op.LT):
        return _recent(_orders(rule, now), Order.placed_at, rule.op, rule.value, now)
    if metric is Metric.ORDERS_COUNT:
        return compare(func.count(), rule.op, rule.value), _holds(0, rule.op, rule.value)
    if metric is Metric.TOTAL_SPENT:
        units, scale = money_units(rule)
        total = func.coalesce(money_sum(units), 0)
        return compare(total, rule.op, _scaled(rule.value, scale)), _holds(0, rule.op, rule.value)
    if metric is Metric.AVERAGE_ORDER_VALUE:
        return _average(rule), rule.op is Op.NOT_EXISTS
    if metric is Metric.DAYS_SINCE_LAST_ORDER:
        return _days_since(func.max(Order.placed_at), rule.op, rule.value, now), rule.op is Op.NOT_EXISTS
    column = func.min(Order.placed_at) if metric is Metric.FIRST_ORDER_AT else func.max(Order.placed_at)
    return time_compare(column, rule.op, rule.value, now), rule.op is Op.NOT_EXISTS


_NEVER_EMPTY = (Metric.ORDERS_COUNT, Metric.TOTAL_SPENT)  # 0 for a profile without orders, never missing
ORDER_METRICS = (Metric.ORDERS_COUNT, Metric.TOTAL_SPENT, Metric.AVERAGE_ORDER_VALUE, Metric.FIRST_ORDER_AT,
                 Metric.LAST_ORDER_AT, Metric.DAYS_SINCE_LAST_ORDER)


def _grouped(rows: Select[Any], condition: ColumnElement[bool], *, empty: bool) -> ColumnElement[bool]:
    """In when the profile's group meets `condition`; `empty`: whether a profile with no rows is in."""
    profile_id = rows.selected_columns[0]
    if empty:
        return not_(member(rows.group_by(profile_id).having(not_(func.coalesce(condition, false())))))
    return member(rows.group_by(profile_id).having(condition))


def _orders(rule: Rule, now: datetime) -> Select[Any]:
    query = select(Order.profile_id).where(Order.status.in_(COUNTED_ORDERS),
                                           *in_period(Order.placed_at, rule, now, Profile.time_zone))
    if rule.currency is not None:
        query = query.where(Order.currency == rule.currency)
    return query.join(Profile, Profile.id == Order.profile_id) if rule.window is not None else query


def _scaled(value: Any, scale: int) -> Any:
    """The rule's value in stored units (x 10^4 x scale), exact."""
    if isinstance(value, list):
        return [_scaled(v, scale) for v in value]
    return literal(Decimal(str(value)) * MONEY_SCALE * scale, Numeric())


def _average(rule: Rule) -> ColumnElement[bool]:
    units, scale = money_units(rule)
    counted = func.count(units)
    value = rule.value
    if rule.op in (Op.EXISTS, Op.NOT_EXISTS):
        return counted > 0 if rule.op is Op.EXISTS else counted == 0
    times_count = ([_scaled(v, scale) * counted for v in value] if isinstance(value, list)
                   else _scaled(value, scale) * counted)
    return and_(counted > 0, compare(money_sum(units), rule.op, times_count))


def _holds(amount: int, op: Op, value: Any) -> bool:
    """The rule on a profile with no orders (a count or a total of 0)."""
    if op is Op.BETWEEN:
        return bool(value[0] <= amount <= value[1])
    return bool({Op.EQ: amount == value, Op.NE: amount != value, Op.GT: amount > value, Op.GTE: amount >= value,
                 Op.LT: amount < value, Op.LTE: amount <= value}[op])


def _days_since(last: Any, op: Op, value: Any, now: datetime) -> ColumnElement[bool]:
    """Whole days (of 24 h) since `last`, compared without arithmetic in SQL: days >= k holds
    when last <= now - k days, days <= k when last > now - (k + 1) days."""
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        present: ColumnElement[bool] = last.is_not(None) if op is Op.EXISTS else last.is_(None)
        return present
    if op is Op.BETWEEN:
        return and_(_at_least(last, math.ceil(value[0]), now), _at_most(last, math.floor(value[1]), now))
    if op in (Op.EQ, Op.NE):
        whole = value == int(value)
        equal = and_(_at_least(last, int(value), now), _at_most(last, int(value), now)) if whole else false()
        return equal if op is Op.EQ else and_(last.is_not(None), not_(equal))
    bounds = {Op.GTE: (_at_least, math.ceil(value)), Op.GT: (_at_least, math.floor(value) + 1),
              Op.LTE: (_at_most, math.floor(value)), Op.LT: (_at_most, math.ceil(value) - 1)}
    bound, days = bounds[op]
    return bound(last, days, now)


def _recent(rows: Select[Any], at: Any, op: Op, value: Any, now: datetime) -> ColumnElement[bool]:
    """days since the latest row <= k holds when any row is newer than the cutoff: a range of an
    index on the time, no grouping."""
    days = math.floor(value) if op is Op.LTE else math.ceil(value) - 1
    return member(rows.where(at > now - timedelta(days=days + 1)))


def _at_least(last: Any, days: int, now: datetime) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = last <= now - timedelta(days=days)
    return condition


def _at_most(last: Any, days: int, now: datetime) -> ColumnElement[bool]:
    condition: ColumnElement[bool] = last > now - timedelta(days=days + 1)
    return condition


def _engagements(rule: Rule, now: datetime) -> Any:
    """Opened, clicked and replied: responses to messages, and events of those names."""
    responses = select(Response.profile_id.label("profile_id"), Response.occurred_at.label("at")).where(
        Response.kind.in_(ENGAGEMENTS), *in_period(Response.occurred_at, rule, now, Profile.time_zone))
    events = select(Event.profile_id.label("profile_id"), Event.occurred_at.label("at")).where(
        Event.name.in_(ENGAGEMENTS), *in_period(Event.occurred_at, rule, now, Profile.time_zone))
    if rule.window is not None:
        responses = responses.join(Profile, Profile.id == Response.profile_id)
        events = events.join(Profile, Profile.id == Event.profile_id)
    return union_all(responses, events).subquery("engagements")
