"""The words of event and metric rules: metrics, calendar windows, event counts, and which
orders and responses the metrics read.

Metrics come from the `orders` table (orders that were cancelled or refunded do not count) and,
for engagement, from responses (`opened`, `clicked`, `replied`) and events of the same names.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ecrm.orders.models import OrderStatus
from ecrm.types import ResponseKind

COUNTED_ORDERS = (OrderStatus.PLACED.value, OrderStatus.PAID.value, OrderStatus.FULFILLED.value)
ENGAGEMENTS = (ResponseKind.OPENED.value, ResponseKind.CLICKED.value, ResponseKind.REPLIED.value)
MAX_COUNT = 1_000_000_000
MAX_DAYS = 36_500


class Metric(StrEnum):
    ORDERS_COUNT = "orders_count"
    TOTAL_SPENT = "total_spent"
    AVERAGE_ORDER_VALUE = "average_order_value"
    FIRST_ORDER_AT = "first_order_at"
    LAST_ORDER_AT = "last_order_at"
    DAYS_SINCE_LAST_ORDER = "days_since_last_order"
    DAYS_SINCE_LAST_ENGAGEMENT = "days_since_last_engagement"
    RECENCY = "recency"
    FREQUENCY = "frequency"
    MONETARY = "monetary"
    RFM = "rfm"


NUMBER_METRICS = (Metric.ORDERS_COUNT, Metric.TOTAL_SPENT, Metric.AVERAGE_ORDER_VALUE,
                  Metric.DAYS_SINCE_LAST_ORDER, Metric.DAYS_SINCE_LAST_ENGAGEMENT)
MONEY_METRICS = (Metric.TOTAL_SPENT, Metric.AVERAGE_ORDER_VALUE, Metric.MONETARY, Metric.RFM)
TIME_METRICS = (Metric.FIRST_ORDER_AT, Metric.LAST_ORDER_AT)
DAYS_METRICS = (Metric.DAYS_SINCE_LAST_ORDER, Metric.DAYS_SINCE_LAST_ENGAGEMENT)
QUINTILE_METRICS = (Metric.RECENCY, Metric.FREQUENCY, Metric.MONETARY)


class Window(StrEnum):
    """A calendar period up to the evaluation instant, in the profile's own time zone (weeks
    start on Monday)."""

    TODAY = "today"
    THIS_WEEK = "this_week"
    THIS_MONTH = "this_month"
    THIS_YEAR = "this_year"


class CountTest(BaseModel):
    """How many matching events: exactly one of gte, gt, lte, lt, eq."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gte: int | None = Field(None, ge=0, le=MAX_COUNT, strict=True)
    gt: int | None = Field(None, ge=0, le=MAX_COUNT, strict=True)
    lte: int | None = Field(None, ge=0, le=MAX_COUNT, strict=True)
    lt: int | None = Field(None, ge=0, le=MAX_COUNT, strict=True)
    eq: int | None = Field(None, ge=0, le=MAX_COUNT, strict=True)

    @model_validator(mode="after")
    def _one(self) -> CountTest:
        if len(self.model_fields_set) != 1 or self.test()[1] is None:
            raise ValueError("count takes one of gte, gt, lte, lt, eq with a whole number, e.g. {gte: 2}")
        return self

    def test(self) -> tuple[str, int | None]:
        name = next(iter(self.model_fields_set), "gte")
        return name, getattr(self, name)


AT_LEAST_ONCE = CountTest(gte=1)
