"""The plain evaluator of event, metric and reachable rules (see evaluator.py), in Python
arithmetic: exact decimals for money, zoneinfo for calendar windows, NTILE written out."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ecrm.segments.rules import Rule
from ecrm.segments.values import Op, parse_duration
from ecrm.segments.vocabulary import COUNTED_ORDERS, ENGAGEMENTS, Metric, Window
from ecrm.types import ChannelKind
from tests.segments import evaluator as base

COUNTS = {"gte": lambda c, n: c >= n, "gt": lambda c, n: c > n, "lte": lambda c, n: c <= n,
          "lt": lambda c, n: c < n, "eq": lambda c, n: c == n}


def zone_of(profile: dict[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(profile.get("time_zone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def period_start(window: Window, now: datetime, zone: ZoneInfo) -> datetime:
    day = now.astimezone(zone).date()
    first = {Window.TODAY: day, Window.THIS_WEEK: day - timedelta(days=day.weekday()),
             Window.THIS_MONTH: date(day.year, day.month, 1), Window.THIS_YEAR: date(day.year, 1, 1)}[window]
    return datetime.combine(first, time(), tzinfo=zone).astimezone(UTC)


def in_period(at: datetime, rule: Rule, now: datetime, profile: dict[str, Any]) -> bool:
    if rule.within is not None:
        return now - parse_duration(rule.within) < at <= now
    if rule.between is not None:
        start, end = rule.between
        if isinstance(start, datetime):
            return bool(start <= at <= end)
        after_end = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC) if end < date.max else None
        return datetime.combine(start, time(), tzinfo=UTC) <= at and (after_end is None or at < after_end)
    if rule.window is not None:
        return period_start(rule.window, now, zone_of(profile)) <= at <= now
    return True


def event_holds(rule: Rule, profile: dict[str, Any], now: datetime) -> bool:
    def fits(event: dict[str, Any]) -> bool:
        return all(base.property_holds(t.field, t.op, t.value, event["properties"], now) for t in rule.where or [])

    events = [e for e in profile.get("events", []) if e["name"] == rule.event and fits(e)]
    if rule.then_not is not None:
        gap = parse_duration(rule.within or "0s")
        return any(a["occurred_at"] <= now - gap and not any(
            b is not a and b["name"] == rule.then_not and a["occurred_at"] <= b["occurred_at"] <= a["occurred_at"] + gap
            for b in profile.get("events", [])) for a in events)
    count = sum(1 for e in events if in_period(e["occurred_at"], rule, now, profile))
    name, wanted = rule.count.test() if rule.count else ("gte", 1)
    return bool(COUNTS[name](count, wanted))


def reachable_holds(channel: ChannelKind, profile: dict[str, Any]) -> bool:
    consented = profile.get("consents", {}).get(channel.value) == "granted"
    if channel is ChannelKind.EMAIL:
        return consented and profile.get("email") is not None
    if channel is ChannelKind.SMS:
        return consented and profile.get("phone") is not None and profile.get("phone_invalid") is None
    return consented and bool(profile.get("push"))


def counted_orders(rule: Rule, profile: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
    return [o for o in profile.get("orders", []) if o["status"] in COUNTED_ORDERS
            and in_period(o["placed_at"], rule, now, profile)]


def amount(rule: Rule, order: dict[str, Any]) -> Decimal | None:
    """The order in the rule's money, in 1/10,000 units (None: not counted)."""
    if rule.currency is not None:
        return Decimal(order["total_e4"]) if order["currency"] == rule.currency else None
    rate = (rule.rates or {}).get(order["currency"])
    return None if rate is None else Decimal(order["total_e4"]) * rate


def metric_holds(rule: Rule, profile: dict[str, Any], now: datetime, everyone: list[dict[str, Any]]) -> bool:
    metric, op, value = rule.metric, rule.op, rule.value
    if metric in (Metric.RECENCY, Metric.FREQUENCY, Metric.MONETARY, Metric.RFM):
        return _quintile(rule, profile, now, everyone)
    if metric is Metric.DAYS_SINCE_LAST_ENGAGEMENT:
        times = [r["occurred_at"] for r in profile.get("responses", []) if r["kind"] in ENGAGEMENTS
                 and in_period(r["occurred_at"], rule, now, profile)]
        times += [e["occurred_at"] for e in profile.get("events", []) if e["name"] in ENGAGEMENTS
                  and in_period(e["occurred_at"], rule, now, profile)]
        return _days(max(times, default=None), op, value, now)
    orders = counted_orders(rule, profile, now)
    placed = [o["placed_at"] for o in orders]
    if metric is Metric.ORDERS_COUNT:
        return op is Op.EXISTS if op in (Op.EXISTS, Op.NOT_EXISTS) else _number(len(orders), op, value)
    if metric is Metric.FIRST_ORDER_AT:
        return bool(base.time_holds(min(placed, default=None), op, value, now))
    if metric is Metric.LAST_ORDER_AT:
        return bool(base.time_holds(max(placed, default=None), op, value, now))
    if metric is Metric.DAYS_SINCE_LAST_ORDER:
        return _days(max(placed, default=None), op, value, now)
    amounts = [a for a in (amount(rule, o) for o in orders) if a is not None]
    if metric is Metric.TOTAL_SPENT:
        return op is Op.EXISTS if op in (Op.EXISTS, Op.NOT_EXISTS) else _number(sum(amounts, Decimal(0)) / 10_000,
                                                                                 op, value)
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        return bool(amounts) == (op is Op.EXISTS)
    # the average against the value: the sum against value x count, exactly
    times_count = [Decimal(str(v)) * len(amounts) for v in value] if isinstance(value, list) else \
        Decimal(str(value)) * len(amounts)
    return bool(amounts) and bool(base.compare(sum(amounts, Decimal(0)) / 10_000, op, times_count))


def _number(found: Decimal | int, op: Op, value: Any) -> bool:
    wanted = [Decimal(str(v)) for v in value] if isinstance(value, list) else Decimal(str(value))
    return bool(base.compare(Decimal(found), op, wanted))


def _days(last: datetime | None, op: Op, value: Any, now: datetime) -> bool:
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        return (last is not None) == (op is Op.EXISTS)
    if last is None:
        return False
    return _number(math.floor((now - last) / timedelta(days=1)), op, value)


def _quintile(rule: Rule, profile: dict[str, Any], now: datetime, everyone: list[dict[str, Any]]) -> bool:
    scores = rfm_scores(rule, now, everyone)
    score = scores.get(id(profile))
    if score is None:
        return False
    if rule.metric is Metric.RFM:
        codes = rule.value if isinstance(rule.value, list) else [rule.value]
        hit = "-".join(map(str, score)) in codes
        return not hit if rule.op in (Op.NE, Op.NOT_IN) else hit
    index = {Metric.RECENCY: 0, Metric.FREQUENCY: 1, Metric.MONETARY: 2}[rule.metric]  # type: ignore[index]
    return bool(base.compare(score[index], rule.op, rule.value))


def rfm_scores(rule: Rule, now: datetime, everyone: list[dict[str, Any]]) -> dict[int, tuple[int, int, int]]:
    """NTILE(5) of each profile with a counted order, ties broken by position (the id order)."""
    rows = []
    for position, profile in enumerate(everyone):
        orders = counted_orders(rule, profile, now)
        if orders:
            money = (rule.currency is not None or bool(rule.rates))
            spent = sum((a for a in (amount(rule, o) for o in orders) if a is not None), Decimal(0)) if money else 0
            rows.append((id(profile), position, max(o["placed_at"] for o in orders), len(orders), spent))
    tiles: dict[int, list[int]] = {row[0]: [] for row in rows}
    for column in (2, 3, 4):
        for rank, row in enumerate(sorted(rows, key=lambda r: (r[column], r[1]))):
            tiles[row[0]].append(ntile(rank, len(rows)))
    return {key: (t[0], t[1], t[2]) for key, t in tiles.items()}


def ntile(rank: int, rows: int, buckets: int = 5) -> int:
    """SQL NTILE: the first rows % buckets buckets hold one row more."""
    small, larger = divmod(rows, buckets)
    big_rows = larger * (small + 1)
    return rank // (small + 1) + 1 if rank < big_rows else larger + (rank - big_rows) // small + 1
