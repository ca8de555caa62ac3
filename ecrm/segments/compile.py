"""Compile an audience into one SQL query over profiles (SQLAlchemy Core, SQLite and PostgreSQL).

The rule tree becomes one WHERE clause. A comparison on a missing or null value is NULL in SQL,
which WHERE drops like false; under a `not:` each comparison is wrapped in coalesce(.., false)
so the complement is exact (two-valued) and takes in the NULLs. Events, metrics, `reachable`
and named segments compile to conditions that are never NULL (`ecrm.segments.compile_events`,
`compile_metrics`, `reach`). Durations count back from `now`, the evaluation instant the caller
takes from its clock.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, false, not_, or_, select, true

from ecrm.profiles.models import Profile
from ecrm.segments.comparisons import compare, exact, json_compare, time_compare
from ecrm.segments.compile_events import event_condition
from ecrm.segments.compile_metrics import grouped_members, metric_condition, order_group
from ecrm.segments.reach import has_address, has_consent, reachable
from ecrm.segments.rules import Audience, ConsentPolicy, Rule
from ecrm.segments.values import Op
from ecrm.types import ChannelKind


def compile_audience(audience: Audience, channel: ChannelKind, now: datetime) -> Select[int]:
    """Profile ids in the audience who can be reached on `channel`, in id order, as of `now`.
    Named segments and money metrics must be resolved (`ecrm.segments.resolve`) first."""
    conditions = [compile_rule(audience.root(), now), has_address(channel)]
    if audience.consent is ConsentPolicy.REQUIRED:
        conditions.append(has_consent(channel))
    return select(Profile.id).where(and_(true(), *conditions)).order_by(Profile.id)


def compile_rule(rule: Rule, now: datetime, exact_: bool = False) -> ColumnElement[bool]:
    """`exact_`: the result must be true or false, never NULL (the rule sits under a `not:`)."""
    if rule.all_ is not None:
        return and_(true(), *_siblings(rule.all_, now, exact_, every=True))
    if rule.any_ is not None:
        return or_(false(), *_siblings(rule.any_, now, exact_, every=False))
    if rule.not_ is not None:
        return not_(compile_rule(rule.not_, now, exact_=True))
    if rule.segment is not None:
        if rule.definition is None:
            raise ValueError(f"segment '{rule.segment}' must be resolved first (ecrm.segments.resolve)")
        return compile_rule(rule.definition, now, exact_)
    if rule.event is not None:
        return event_condition(rule, now)
    if rule.metric is not None:
        return metric_condition(rule, now)
    if rule.reachable is not None:
        return reachable(rule.reachable)
    condition = _comparison(rule, now)
    return exact(condition) if exact_ else condition


def _siblings(rules: list[Rule], now: datetime, exact_: bool, *, every: bool) -> list[ColumnElement[bool]]:
    """The children of an `all` (`every`) or `any`, order metrics over the same orders joined
    into one grouping: `orders_count >= 2` and `days_since_last_order > 90` read the orders once."""
    conditions: list[ColumnElement[bool]] = []
    groups: dict[Hashable, tuple[Rule, list[ColumnElement[bool]]]] = {}
    for child in rules:
        grouped = order_group(child, now)
        if grouped is None:
            conditions.append(compile_rule(child, now, exact_))
        else:
            groups.setdefault(grouped[0], (child, []))[1].append(grouped[1])
    for first, tests in groups.values():
        conditions.append(grouped_members(first, tests, now, every=every))
    return conditions


def _comparison(rule: Rule, now: datetime) -> ColumnElement[bool]:
    field = rule.field or ""
    if field == "language":
        return _language(rule)
    if field.startswith("traits."):
        return json_compare(field.removeprefix("traits."), rule.op, rule.value, now)
    if rule.op in (Op.EXISTS, Op.NOT_EXISTS):
        column = getattr(Profile, field)
        present: ColumnElement[bool] = column.is_not(None) if rule.op is Op.EXISTS else column.is_(None)
        return present
    if field == "created_at":
        return time_compare(Profile.created_at, rule.op, rule.value, now)
    return compare(getattr(Profile, field), rule.op, rule.value)


def _language(rule: Rule) -> ColumnElement[bool]:
    """`fa` matches the locales `fa` and `fa_<region>` (locales are stored normalised, e.g. fa_IR)."""
    languages = rule.value if isinstance(rule.value, list) else [rule.value]
    match = or_(*(Profile.locale == str(lang) for lang in languages),
                *(Profile.locale.startswith(f"{lang}_", autoescape=True) for lang in languages))
    return not_(match) if rule.op in (Op.NE, Op.NOT_IN) else match
