"""Locale-aware Jinja filters (numbers, money, dates) backed by Babel's CLDR data.

They read the recipient's locale from the render context, so `{{ 1234.5 | money('EUR') }}`
prints `€1,234.50` in English and the same amount with Persian digits and separators in `fa`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context
from jinja2.utils import missing

# Babel localises separators but leaves digits Latin; these are CLDR's native digit sets.
DIGITS = {"arab": "٠١٢٣٤٥٦٧٨٩", "arabext": "۰۱۲۳۴۵۶۷۸۹", "deva": "०१२३४५६७८९", "beng": "০১২৩৪৫৬৭৮৯"}


def _tag(ctx: Context) -> str:
    """The recipient's locale tag: `str(ctx.get("locale") or "en")` in one call instead of three."""
    tag = ctx.resolve_or_missing("locale")
    return str(tag) if tag and tag is not missing else "en"


def _locale(ctx: Context) -> Locale:
    return _parse(_tag(ctx))


@cache
def _parse(tag: str) -> Locale:
    try:
        return Locale.parse(tag.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


@cache
def _digit_table(locale: Locale) -> dict[int, int] | None:
    digits = DIGITS.get(locale.default_numbering_system)
    return str.maketrans("0123456789", digits) if digits else None


def _native(text: str, locale: Locale) -> str:
    table = _digit_table(locale)
    return text.translate(table) if table else text


@cache
def _int_format(tag: str) -> dict[int, int] | None:
    """The translation of Python's `f"{n:,}"` into locale `tag`'s group separator and digits
    (empty when they are the same), or None when plain thousands grouping does not format
    integers exactly there. Keyed by the tag string: hashing a babel Locale (as `_digit_table`
    does) costs more than formatting the integer."""
    locale = _parse(tag)
    pattern = locale.decimal_formats[None]
    if pattern.grouping != (3, 3) or pattern.prefix[0] or pattern.suffix[0]:
        return None
    group = str(locale.number_symbols[locale.default_numbering_system]["group"])
    if len(group) != 1:
        return None
    table = {**(_digit_table(locale) or {}), ord(","): ord(group)}
    return {} if table == {ord(","): ord(",")} else table


@pass_context
def number(ctx: Context, value: float | Decimal | int) -> str:
    tag = _tag(ctx)
    if type(value) is int and value >= 0:  # the common case (counts, points), without Babel's pattern engine
        table = _int_format(tag)
        if table is not None:
            text = f"{value:,}"
            return text.translate(table) if table else text
    locale = _parse(tag)
    return _native(format_decimal(value, locale=locale, numbering_system="default"), locale)


@pass_context
def money(ctx: Context, value: float | Decimal | int, currency: str) -> str:
    locale = _locale(ctx)
    return _native(format_currency(value, currency, locale=locale, numbering_system="default"), locale)


@pass_context
def day(ctx: Context, value: date | datetime | str, style: str = "long") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(format_date(value, format=style, locale=_locale(ctx)))


FILTERS: dict[str, Callable[..., Any]] = {"number": number, "money": money, "day": day}
