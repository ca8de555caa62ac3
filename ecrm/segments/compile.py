"""Compile an audience into one SQL query over profiles (SQLAlchemy Core, SQLite and PostgreSQL).

The rule tree becomes one WHERE clause. A comparison on a missing or null value is NULL in SQL,
which WHERE drops like false; under a `not:` each comparison is wrapped in coalesce(.., false)
so the complement is exact (two-valued) and takes in the NULLs. Durations count back from
`now`, the evaluation instant the caller takes from its clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Select,
    and_,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from ecrm.profiles.models import Profile
from ecrm.segments.reach import has_address, has_consent
from ecrm.segments.rules import AGE_OPS, Audience, ConsentPolicy, Op, Rule, kind_of, parse_duration
from ecrm.segments.traits import Contains, TraitIs, trait_date, trait_number, trait_present, trait_text
from ecrm.types import ChannelKind


def compile_audience(audience: Audience, channel: ChannelKind, now: datetime) -> Select[int]:
    """Profile ids in the audience who can be reached on `channel`, in id order, as of `now`."""
    conditions = [compile_rule(audience.root(), now), has_address(channel)]
    if audience.consent is ConsentPolicy.REQUIRED:
        conditions.append(has_consent(channel))
    return select(Profile.id).where(and_(true(), *conditions)).order_by(Profile.id)


def compile_rule(rule: Rule, now: datetime, exact: bool = False) -> ColumnElement[bool]:
    """`exact`: the result must be true or false, never NULL (the rule sits under a `not:`)."""
    if rule.all_ is not None:
        return and_(true(), *(compile_rule(child, now, exact) for child in rule.all_))
    if rule.any_ is not None:
        return or_(false(), *(compile_rule(child, now, exact) for child in rule.any_))
    if rule.not_ is not None:
        return not_(compile_rule(rule.not_, now, exact=True))
    condition = _comparison(rule, now)
    return func.coalesce(condition, false(), type_=Boolean) if exact else condition


def _comparison(rule: Rule, now: datetime) -> ColumnElement[bool]:
    field = rule.field or ""
    if field == "language":
        return _language(rule)
    if rule.op in (Op.EXISTS, Op.NOT_EXISTS):
        present = trait_present(_key(field)) if field.startswith("traits.") else getattr(Profile, field).is_not(None)
        return present if rule.op is Op.EXISTS else not_(present)
    if field == "created_at":
        return _time(rule, now)
    if not field.startswith("traits."):
        return _compare(getattr(Profile, field), rule.op, rule.value)
    key = _key(field)
    if rule.op in AGE_OPS:
        cutoff = (now - parse_duration(rule.value)).astimezone(UTC).date().isoformat()
        return trait_date(key) <= cutoff if rule.op is Op.OLDER_THAN else trait_date(key) > cutoff
    sample = rule.value[0] if isinstance(rule.value, list) else rule.value
    kind = kind_of(sample)
    if kind == "bool":
        return _boolean(key, rule.op, rule.value)
    if kind == "number":
        return _compare(trait_number(key), rule.op, _each(rule.value, lambda v: literal(float(v), Float)))
    if kind == "date":
        return _compare(trait_date(key), rule.op, _each(rule.value, lambda v: v.isoformat()))
    return _compare(trait_text(key), rule.op, rule.value)


def _key(field: str) -> str:
    return field.removeprefix("traits.")


def _each(value: Any, convert: Any) -> Any:
    return [convert(v) for v in value] if isinstance(value, list) else convert(value)


def _compare(column: Any, op: Op, value: Any) -> ColumnElement[bool]:
    """A comparison that is NULL when `column` is NULL (the caller decides what NULL means)."""
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


def _boolean(key: str, op: Op, value: Any) -> ColumnElement[bool]:
    """true/false traits: which of the two values the rule accepts; other kinds never match."""
    values = set(value) if isinstance(value, list) else {value}
    accepted = {Op.EQ: values, Op.IN: values, Op.NE: {True, False} - values, Op.NOT_IN: {True, False} - values}[op]
    return or_(false(), *(TraitIs(key, "true" if flag else "false") for flag in sorted(accepted)))


def _time(rule: Rule, now: datetime) -> ColumnElement[bool]:
    """created_at against a duration, a time, or a date (a whole UTC day)."""
    column = Profile.created_at
    if rule.op in AGE_OPS:
        cutoff = now - parse_duration(rule.value)
        return column <= cutoff if rule.op is Op.OLDER_THAN else column > cutoff
    if kind_of(rule.value[0] if isinstance(rule.value, list) else rule.value) == "datetime":
        return _compare(column, rule.op, rule.value)
    low, high = (rule.value[0], rule.value[1]) if rule.op is Op.BETWEEN else (rule.value, rule.value)
    start, end = _day_start(low), _day_start(high + timedelta(days=1)) if high < date.max else None
    on_or_before_high = column < end if end is not None else true()
    days = {
        Op.EQ: and_(column >= start, on_or_before_high),
        Op.NE: or_(column < start, not_(on_or_before_high)),
        Op.GT: not_(on_or_before_high),
        Op.GTE: column >= start,
        Op.LT: column < start,
        Op.LTE: on_or_before_high,
        Op.BETWEEN: and_(column >= start, on_or_before_high),
    }
    return days[rule.op]


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def _language(rule: Rule) -> ColumnElement[bool]:
    """`fa` matches the locales `fa` and `fa_<region>` (locales are stored normalised, e.g. fa_IR)."""
    languages = rule.value if isinstance(rule.value, list) else [rule.value]
    match = or_(*(Profile.locale == str(lang) for lang in languages),
                *(Profile.locale.startswith(f"{lang}_", autoescape=True) for lang in languages))
    return not_(match) if rule.op in (Op.NE, Op.NOT_IN) else match
