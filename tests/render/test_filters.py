"""The integer shortcut of the `number` filter prints what Babel's general formatter prints."""

from __future__ import annotations

import pytest
from babel.numbers import format_decimal
from jinja2 import Environment

from ecrm.render.filters import _native, _parse, number


@pytest.mark.parametrize("tag", ["en", "fa", "fa_IR", "th", "ar_EG", "hi", "bn", "de", "fr", "ps", "xx", ""])
def test_integers_are_formatted_like_babel_with_native_digits(tag: str) -> None:
    ctx = Environment().from_string("").new_context({"locale": tag})
    locale = _parse(tag or "en")
    for value in [0, 7, 999, 1000, 1234, 999_999, 1_234_567, 10**12, -1234]:
        assert number(ctx, value) == _native(format_decimal(value, locale=locale, numbering_system="default"), locale)


def test_persian_and_thai_points() -> None:
    env = Environment()
    assert number(env.from_string("").new_context({"locale": "fa"}), 1234567) == "۱٬۲۳۴٬۵۶۷"
    assert number(env.from_string("").new_context({"locale": "th"}), 1234567) == "1,234,567"


def test_the_locale_is_read_like_any_template_variable() -> None:
    env = Environment()
    env.filters["number"] = number
    assert env.from_string("{{ 1234567 | number }}").render() == "1,234,567"  # no locale: English
    assert env.from_string("{% set locale = 'fa' %}{{ 1234567 | number }}").render(locale="en") == "۱٬۲۳۴٬۵۶۷"
    assert env.from_string("{{ 1234567 | number }}").render(locale="") == "1,234,567"
