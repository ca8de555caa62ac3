"""Compile an audience into one SQL query over profiles (SQLAlchemy Core, any dialect)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import ColumnElement, Select, and_, exists, not_, or_, select, true

from ecrm.profiles.models import Consent, Profile
from ecrm.segments.rules import Audience, ConsentPolicy, Op, Rule
from ecrm.types import ChannelKind, ConsentState

ADDRESS = {ChannelKind.EMAIL: Profile.email, ChannelKind.SMS: Profile.phone}


def compile_audience(audience: Audience, channel: ChannelKind) -> Select[int]:
    """Profile ids in the audience who can be reached on `channel`, in id order."""
    conditions = [compile_rule(rule) for rule in audience.rules]
    address = ADDRESS.get(channel)
    if address is not None:
        conditions.append(address.is_not(None))
    if audience.consent is ConsentPolicy.REQUIRED:
        conditions.append(has_consent(channel))
    return select(Profile.id).where(and_(true(), *conditions)).order_by(Profile.id)


def has_consent(channel: ChannelKind) -> ColumnElement[bool]:
    return exists().where(
        Consent.profile_id == Profile.id, Consent.channel == channel.value, Consent.state == ConsentState.GRANTED.value
    )


def compile_rule(rule: Rule) -> ColumnElement[bool]:
    if rule.field == "language":
        return _language(rule)
    column = _column(rule.field, rule.value)
    if rule.op is Op.EXISTS:
        return column.is_not(None)
    if rule.op is Op.NOT_EXISTS:
        return column.is_(None)
    if rule.op is Op.CONTAINS:
        return column.contains(str(rule.value), autoescape=True)
    if rule.op in (Op.NE, Op.NOT_IN):
        positive = column.in_(rule.value) if rule.op is Op.NOT_IN else column == rule.value
        return (column.is_(None)) | not_(positive)
    compare: ColumnElement[bool] = _COMPARE[rule.op](column, rule.value)
    return compare


def _language(rule: Rule) -> ColumnElement[bool]:
    """`fa` matches the locales `fa` and `fa_<region>` (locales are stored normalised, e.g. fa_IR)."""
    languages = rule.value if isinstance(rule.value, list) else [rule.value]
    match = or_(*(Profile.locale == str(lang) for lang in languages),
                *(Profile.locale.startswith(f"{lang}_", autoescape=True) for lang in languages))
    return not_(match) if rule.op in (Op.NE, Op.NOT_IN) else match


_COMPARE: dict[Op, Any] = {
    Op.EQ: lambda c, v: c == v,
    Op.IN: lambda c, v: c.in_(v),
    Op.GT: lambda c, v: c > v,
    Op.GTE: lambda c, v: c >= v,
    Op.LT: lambda c, v: c < v,
    Op.LTE: lambda c, v: c <= v,
}


def _column(field: str, value: Any) -> ColumnElement[Any]:
    if not field.startswith("traits."):
        return getattr(Profile, field)  # type: ignore[no-any-return]
    element = Profile.traits[field.removeprefix("traits.")]
    sample = value[0] if isinstance(value, list) and value else value
    if isinstance(sample, bool):
        return cast(ColumnElement[Any], element.as_boolean())
    if isinstance(sample, int | float):  # one numeric type, so 300 and 300.5 compare alike
        return cast(ColumnElement[Any], element.as_float())
    return cast(ColumnElement[Any], element.as_string())
