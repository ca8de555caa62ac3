"""A plain Python evaluator of audience rules, written from the README's semantics, to check
the SQL compiler against: `None` stands for a missing or null value and fails every comparison;
`not` is the plain complement.

A profile is a dict of its columns and traits, and of what it did: `events` (name, properties,
occurred_at), `orders` (status, total_e4, currency, placed_at), `responses` (kind,
occurred_at), `consents` ({channel: state}), `push` (whether a live push subscription exists).
RFM needs every profile (`everyone`), in id order."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from ecrm.segments.rules import Rule
from ecrm.segments.values import Op, kind_of, parse_duration
from tests.segments import evaluator_more as more

NUMERIC = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
DATE_PREFIX = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}")


def matches(rule: Rule, profile: dict[str, Any], now: datetime, everyone: list[dict[str, Any]] | None = None) -> bool:
    if rule.all_ is not None:
        return all(matches(child, profile, now, everyone) for child in rule.all_)
    if rule.any_ is not None:
        return any(matches(child, profile, now, everyone) for child in rule.any_)
    if rule.not_ is not None:
        return not matches(rule.not_, profile, now, everyone)
    if rule.definition is not None:
        return matches(rule.definition, profile, now, everyone)
    if rule.event is not None:
        return more.event_holds(rule, profile, now)
    if rule.metric is not None:
        return more.metric_holds(rule, profile, now, everyone or [profile])
    if rule.reachable is not None:
        return more.reachable_holds(rule.reachable, profile)
    return _leaf(rule, profile, now)


def property_holds(field: str, op: Op, value: Any, properties: dict[str, Any], now: datetime) -> bool:
    """A `where:` condition: an event property read as a trait is."""
    return _leaf(Rule.model_construct(field="traits." + field.removeprefix("properties."), op=op, value=value),
                 {"traits": properties}, now)


def _leaf(rule: Rule, profile: dict[str, Any], now: datetime) -> bool:
    field, op, value = rule.field or "", rule.op, rule.value
    if field == "language":
        locale = profile["locale"]
        wanted = value if isinstance(value, list) else [value]
        hit = any(locale == lang or locale.startswith(f"{lang}_") for lang in wanted)
        return not hit if op in (Op.NE, Op.NOT_IN) else hit
    raw = profile["traits"].get(field.removeprefix("traits.")) if field.startswith("traits.") else profile[field]
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        return (raw is not None) == (op is Op.EXISTS)
    if field == "created_at":
        return time_holds(raw, op, value, now)
    if op in (Op.OLDER_THAN, Op.NEWER_THAN):
        day = _as_date(raw)
        cutoff = (now - parse_duration(value)).astimezone(UTC).date().isoformat()
        return day is not None and (day <= cutoff if op is Op.OLDER_THAN else day > cutoff)
    kind = kind_of(value[0] if isinstance(value, list) else value)
    typed: Any
    if kind == "bool":
        typed = raw if isinstance(raw, bool) else None
    elif kind == "number":
        typed, value = _as_number(raw), [float(v) for v in value] if isinstance(value, list) else float(value)
    elif kind == "date":
        typed = _as_date(raw)
        value = [v.isoformat() for v in value] if isinstance(value, list) else value.isoformat()
    else:
        typed = raw if isinstance(raw, str) else None
    return typed is not None and compare(typed, op, value)


def _as_number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw) if abs(raw) < 1e300 else None
    if isinstance(raw, str) and NUMERIC.match(raw) and len(raw) <= 40:
        return float(raw)
    return None


def _as_date(raw: Any) -> str | None:
    return raw[:10] if isinstance(raw, str) and DATE_PREFIX.match(raw) else None


def compare(typed: Any, op: Op, value: Any) -> bool:
    if op is Op.CONTAINS:
        return bool(value in typed)
    if op is Op.STARTS_WITH:
        return bool(typed.startswith(value))
    if op is Op.BETWEEN:
        return bool(value[0] <= typed <= value[1])
    compare: dict[Op, Any] = {
        Op.EQ: lambda: typed == value, Op.NE: lambda: typed != value,
        Op.IN: lambda: typed in value, Op.NOT_IN: lambda: typed not in value,
        Op.GT: lambda: typed > value, Op.GTE: lambda: typed >= value,
        Op.LT: lambda: typed < value, Op.LTE: lambda: typed <= value,
    }
    return bool(compare[op]())


def time_holds(at: datetime | None, op: Op, value: Any, now: datetime) -> bool:
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        return (at is not None) == (op is Op.EXISTS)
    if at is None:
        return False
    if op in (Op.OLDER_THAN, Op.NEWER_THAN):
        cutoff = now - parse_duration(value)
        return at <= cutoff if op is Op.OLDER_THAN else at > cutoff
    if isinstance(value, list):
        low, high = value
    else:
        low = high = value
    if isinstance(low, datetime):
        return compare(at, op, value)
    start = datetime.combine(low, time(), tzinfo=UTC)
    end = datetime.combine(high + timedelta(days=1), time(), tzinfo=UTC) if high < date.max else None
    before_end = end is None or at < end
    return {
        Op.EQ: start <= at and before_end, Op.NE: at < start or not before_end,
        Op.GT: not before_end, Op.GTE: at >= start, Op.LT: at < start, Op.LTE: before_end,
        Op.BETWEEN: start <= at and before_end,
    }[op]
