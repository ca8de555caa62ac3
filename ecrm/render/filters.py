"""Locale-aware Jinja filters (numbers, money, dates) backed by Babel's CLDR data.

They read the recipient's locale from the render context, so `{{ 1234.5 | money('EUR') }}`
prints `€1,234.50` in English and the same amount in Persian digits for `fa`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from babel.dates import format_date
from babel.numbers import format_currency, format_decimal
from jinja2 import pass_context
from jinja2.runtime import Context


def _locale(ctx: Context) -> str:
    return str(ctx.get("locale") or "en").replace("-", "_")


@pass_context
def number(ctx: Context, value: float | Decimal | int) -> str:
    return str(format_decimal(value, locale=_locale(ctx)))


@pass_context
def money(ctx: Context, value: float | Decimal | int, currency: str) -> str:
    return str(format_currency(value, currency, locale=_locale(ctx)))


@pass_context
def day(ctx: Context, value: date | datetime | str, style: str = "long") -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return str(format_date(value, format=style, locale=_locale(ctx)))


FILTERS: dict[str, Callable[..., Any]] = {"number": number, "money": money, "day": day}
