"""Money in SQL: each counted order's amount in the rule's currency, exactly, and its sum.

A rule's `currency` keeps the orders in that currency; otherwise `rates` (filled from settings'
`money:`) turn each order into the base currency as total_e4 x round(rate x 10^k); orders in a
currency without a rate are left out (NULL).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Numeric, case
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from ecrm.orders.models import Order
from ecrm.segments.rules import Rule


class money_sum(GenericFunction[Any]):
    """sum() on PostgreSQL (numeric, exact); total() on SQLite, a float that is exact below
    2^53 and, unlike sum(), never fails on an integer overflow."""

    type = Numeric()
    inherit_cache = True


@compiles(money_sum, "sqlite")
def _total_sqlite(element: money_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"total({compiler.process(element.clauses, **kw)})"


@compiles(money_sum, "postgresql")
def _sum_pg(element: money_sum, compiler: SQLCompiler, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


def money_units(rule: Rule) -> tuple[ColumnElement[Any], int]:
    """Each order's amount in the rule's money (NULL: not counted), and the scale 10^k of the rates."""
    amount = Order.total_e4.cast(Numeric())
    if rule.currency is not None:
        return case((Order.currency == rule.currency, amount), else_=None), 1
    rates = rule.rates or {}
    if not rates:
        raise ValueError("a money metric without a currency must be resolved first (ecrm.segments.resolve)")
    scale = 10 ** max(_places(rate) for rate in rates.values())
    whens = [(Order.currency == code, amount * int(rate * scale)) for code, rate in sorted(rates.items())]
    return case(*whens, else_=None), scale


def _places(rate: Decimal) -> int:
    exponent = rate.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


