"""Exact money: ISO 4217 currency codes, their decimals, and the stored integer form.

An amount is stored as an integer count of ten-thousandths of its currency unit (`MONEY_SCALE`),
whatever the currency: 19.99 THB is 199900. Four decimals hold every currency's minor unit
(CLF has four), and a fixed scale means a stored amount never changes meaning when a currency's
decimals do. An amount may have at most its currency's decimals as CLDR (babel) gives them:
2 for THB and EUR, 0 for JPY and IRR, 3 for KWD.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache, lru_cache

from babel.numbers import get_currency_precision, list_currencies

MONEY_SCALE = 10_000
MAX_AMOUNT = Decimal(10) ** 14  # 10^14 * MONEY_SCALE fits a signed 64-bit integer
_CODE = re.compile(r"[A-Z]{3}")
_NOT_MONEY = frozenset({"XXX", "XTS"})  # "no currency" and the testing code


@cache
def currencies() -> frozenset[str]:
    return frozenset(code for code in list_currencies() if _CODE.fullmatch(code)) - _NOT_MONEY


def is_currency(code: str) -> bool:
    return code in currencies()


@lru_cache(maxsize=1024)
def decimals(currency: str) -> int:
    # babel's lookup costs ~3 us, and a cart or order asks it for each amount
    return int(get_currency_precision(currency))


def places(amount: Decimal) -> int:
    """How many decimals `amount` really has: 19.990 has 2, 20 and 2E+1 have 0."""
    exponent = amount.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def to_stored(amount: Decimal) -> int:
    return int(amount * MONEY_SCALE)


def from_stored(units: int) -> Decimal:
    return Decimal(units) / MONEY_SCALE


def format_amount(amount: Decimal, currency: str) -> str:
    """`amount` with its currency's decimals ("20.00" THB, "500" JPY), never rounded."""
    exact = amount.quantize(_unit(max(decimals(currency), places(amount))))
    return f"{exact:f}"


@lru_cache(maxsize=64)
def _unit(places: int) -> Decimal:
    """10 ** -places, the quantum of an amount with that many decimals."""
    return Decimal(1).scaleb(-places)
