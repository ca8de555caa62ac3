"""One comparison in SQL: a column or JSON value against a rule's op and value, NULL when the
value is missing (the caller decides what NULL means). Shared by profile fields, traits, event
properties and metrics."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Float, and_, false, func, literal, not_, or_, true

from ecrm.segments.traits import (
    PROFILE_TRAITS,
    Contains,
    TraitIs,
    trait_date,
    trait_number,
    trait_present,
    trait_text,
)
from ecrm.segments.values import AGE_OPS, Op, kind_of, parse_duration


def compare(column: Any, op: Op, value: Any) -> ColumnElement[bool]:
    """`column` against `value`; NULL when `column` is NULL."""
    if op is Op.CONTAINS:
        return Contains(column, literal(value))
    if op is Op.STARTS_WITH:
        prefix: ColumnElement[bool] = func.substr(column, 1, len(value)) == value
        return prefix
    if op is Op.BETWEEN:
        return and_(column >= value[0], column <= value[1])
    if op in (Op.IN, Op.NOT_IN):
        listed: ColumnElement[bool] = column.in_(value) if op is Op.IN else column.not_in(value)
        return listed
    result: ColumnElement[bool] = _OPERATORS[op](column, value)
    return result


_OPERATORS: dict[Op, Any] = {
    Op.EQ: lambda c, v: c == v,
    Op.NE: lambda c, v: c != v,
    Op.GT: lambda c, v: c > v,
    Op.GTE: lambda c, v: c >= v,
    Op.LT: lambda c, v: c < v,
    Op.LTE: lambda c, v: c <= v,
}


def json_compare(key: str, op: Op, value: Any, now: datetime,
                 source: ColumnElement[Any] = PROFILE_TRAITS) -> ColumnElement[bool]:
    """A trait (or an event property) read as the kind of the rule's value."""
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        present = trait_present(key, source)
        return present if op is Op.EXISTS else not_(present)
    if op in AGE_OPS:
        cutoff = (now - parse_duration(value)).astimezone(UTC).date().isoformat()
        day = trait_date(key, source)
        return day <= cutoff if op is Op.OLDER_THAN else day > cutoff
    kind = kind_of(value[0] if isinstance(value, list) else value)
    if kind == "bool":
        return _boolean(key, op, value, source)
    if kind == "number":
        return compare(trait_number(key, source), op, _each(value, lambda v: literal(float(v), Float)))
    if kind == "date":
        return compare(trait_date(key, source), op, _each(value, lambda v: v.isoformat()))
    return compare(trait_text(key, source), op, value)


def _each(value: Any, convert: Any) -> Any:
    return [convert(v) for v in value] if isinstance(value, list) else convert(value)


def _boolean(key: str, op: Op, value: Any, source: ColumnElement[Any]) -> ColumnElement[bool]:
    """true/false traits: which of the two values the rule accepts; other kinds never match."""
    values = set(value) if isinstance(value, list) else {value}
    accepted = {Op.EQ: values, Op.IN: values, Op.NE: {True, False} - values, Op.NOT_IN: {True, False} - values}[op]
    return or_(false(), *(TraitIs(key, "true" if flag else "false", source) for flag in sorted(accepted)))


def time_compare(column: Any, op: Op, value: Any, now: datetime) -> ColumnElement[bool]:
    """A time column against a duration (back from `now`), a time, or a date (a whole UTC day)."""
    if op in (Op.EXISTS, Op.NOT_EXISTS):
        present: ColumnElement[bool] = column.is_not(None) if op is Op.EXISTS else column.is_(None)
        return present
    if op in AGE_OPS:
        cutoff = now - parse_duration(value)
        aged: ColumnElement[bool] = column <= cutoff if op is Op.OLDER_THAN else column > cutoff
        return aged
    if kind_of(value[0] if isinstance(value, list) else value) == "datetime":
        return compare(column, op, value)
    low, high = (value[0], value[1]) if op is Op.BETWEEN else (value, value)
    start, end = day_start(low), day_start(high + timedelta(days=1)) if high < date.max else None
    on_or_before_high = column < end if end is not None else true()
    days: dict[Op, ColumnElement[bool]] = {
        Op.EQ: and_(column >= start, on_or_before_high),
        Op.NE: or_(column < start, not_(on_or_before_high)),
        Op.GT: not_(on_or_before_high),
        Op.GTE: column >= start,
        Op.LT: column < start,
        Op.LTE: on_or_before_high,
        Op.BETWEEN: and_(column >= start, on_or_before_high),
    }
    return days[op]


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def exact(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """True or false, never NULL (for a condition under `not:`)."""
    known: ColumnElement[bool] = func.coalesce(condition, false(), type_=Boolean)
    return known
