"""The values a rule compares with: ops, durations, the kinds of values (text, number,
true/false, date, time), and which op and value each field and metric takes. Each check
returns the value as rules keep it or raises ValueError with a sentence a marketer can act on;
`ecrm.segments.rules` calls them from its validators."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from ecrm.segments.vocabulary import DAYS_METRICS, MAX_DAYS, NUMBER_METRICS, QUINTILE_METRICS, TIME_METRICS, Metric

TEXT_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "locale", "time_zone")
PROFILE_FIELDS = (*TEXT_FIELDS, "language", "created_at")
MAX_DURATION = timedelta(days=36500)
DURATION = re.compile(r"^([0-9]{1,6})([smhdw])$")
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
RFM_CODE = re.compile(r"^[1-5]-[1-5]-[1-5]$")


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    OLDER_THAN = "older_than"
    NEWER_THAN = "newer_than"


LIST_OPS = (Op.IN, Op.NOT_IN)
NO_VALUE_OPS = (Op.EXISTS, Op.NOT_EXISTS)
ORDER_OPS = (Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN)
TEXT_OPS = (Op.CONTAINS, Op.STARTS_WITH)
AGE_OPS = (Op.OLDER_THAN, Op.NEWER_THAN)


def parse_duration(text: str) -> timedelta:
    """`30d`, `2h`, `15m`, `45s`, `2w`: an exact length of time (1d = 24 h)."""
    match = DURATION.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a duration; write a number and a unit, e.g. 30d, 2h, 15m, 45s, 2w")
    length = timedelta(**{UNITS[match[2]]: int(match[1])})
    if length > MAX_DURATION:
        raise ValueError(f"'{text}' is longer than {MAX_DURATION.days} days")
    return length


def kind_of(value: Any) -> str:
    """The kind a rule's value compares as: bool, number, date, datetime or text."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, date):
        return "date"
    if isinstance(value, str):
        return "text"
    return "other"


def scalar(value: Any, field: str) -> Any:
    """A date written as text (as a stored spec gives it back) becomes a date; on created_at an
    ISO time with a zone becomes a time."""
    if isinstance(value, float) and value != value:
        raise ValueError("NaN is not a number a rule can compare with")
    if isinstance(value, str) and ISO_DATE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a date on the calendar") from None
    if field == "created_at" and isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a date (2026-01-31) or a time (2026-01-31T09:00:00Z)") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("the time needs a zone, e.g. 2026-12-01T09:00:00Z or +03:30")
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"'{value.isoformat()}' is outside the years 1 to 9999 in UTC") from None
    return value


def field_op(field: str | None, op: Op) -> Op:
    if field == "language" and op not in (Op.EQ, Op.NE, *LIST_OPS):
        raise ValueError("field 'language' takes eq, ne, in or not_in")
    if field in TEXT_FIELDS and op in (*ORDER_OPS, *AGE_OPS):
        raise ValueError(f"field '{field}' holds text: use eq, ne, in, not_in, contains, starts_with, "
                         "exists or not_exists")
    if field == "created_at" and op in (*LIST_OPS, *TEXT_OPS):
        raise ValueError("field 'created_at' is a time: use older_than, newer_than, gt, gte, lt, lte, "
                         "between, eq or ne")
    return op


def field_value(field: str, op: Op, value: Any) -> Any:
    if op in NO_VALUE_OPS:
        if value is not None:
            raise ValueError(f"op '{op}' takes no value")
        return None
    if value is None:
        raise ValueError(f"op '{op}' needs a value")
    if op in AGE_OPS:
        if not isinstance(value, str):
            raise ValueError(f"op '{op}' needs a duration, e.g. 30d, 2h, 15m")
        parse_duration(value)
        return value
    if op is Op.BETWEEN:
        return _between(value, field)
    if op in LIST_OPS:
        return _listed(value, field, op)
    return _single(value, field, op)


def metric_op(metric: Metric, op: Op) -> Op:
    allowed = _METRIC_OPS[_metric_kind(metric)]
    if op not in allowed:
        raise ValueError(f"metric '{metric}' takes {', '.join(allowed)}")
    return op


def metric_value(metric: Metric, op: Op, value: Any) -> Any:
    """Numbers for counts, money and days; 1-5 for quintiles; "R-F-M" codes for rfm; dates,
    times and durations for first/last_order_at (as on created_at)."""
    kind = _metric_kind(metric)
    if kind == "time":
        return field_value("created_at", op, value)
    if op in NO_VALUE_OPS:
        return field_value("created_at", op, value)
    values = value if isinstance(value, list) and op in (Op.BETWEEN, *LIST_OPS) else [value]
    if op is Op.BETWEEN and (len(values) != 2 or not isinstance(value, list)):
        raise ValueError("op 'between' needs [low, high], e.g. [2, 5]")
    if op in LIST_OPS and not values:
        raise ValueError(f"op '{op}' needs a list of values")
    for item in values:
        _metric_item(metric, kind, item)
    if op is Op.BETWEEN and values[0] > values[1]:
        raise ValueError(f"op 'between' needs the low end first: [{values[1]}, {values[0]}]")
    return value


def _metric_item(metric: Metric, kind: str, item: Any) -> None:
    if kind == "rfm":
        if not isinstance(item, str) or not RFM_CODE.match(item):
            raise ValueError("rfm is compared with codes of recency-frequency-monetary quintiles, "
                             'e.g. "5-5-5" or "1-2-3" (5 is best)')
        return
    if isinstance(item, bool) or not isinstance(item, int | float) or item != item:
        raise ValueError(f"metric '{metric}' is compared with a number, not {item!r}")
    if kind == "quintile" and item not in (1, 2, 3, 4, 5):
        raise ValueError(f"metric '{metric}' is a quintile: 1 (lowest) to 5 (best)")
    if metric in DAYS_METRICS and abs(item) > MAX_DAYS:
        raise ValueError(f"metric '{metric}' counts days: at most {MAX_DAYS}")
    if abs(item) > 1e15:
        raise ValueError(f"{item} is larger than any {metric} ecrm stores")


def _metric_kind(metric: Metric) -> str:
    if metric in TIME_METRICS:
        return "time"
    if metric in QUINTILE_METRICS:
        return "quintile"
    if metric is Metric.RFM:
        return "rfm"
    assert metric in NUMBER_METRICS
    return "number"


_METRIC_OPS = {
    "number": (Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN, Op.EXISTS, Op.NOT_EXISTS),
    "time": (Op.OLDER_THAN, Op.NEWER_THAN, Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN, Op.EXISTS,
             Op.NOT_EXISTS),
    "quintile": (Op.EQ, Op.NE, Op.GT, Op.GTE, Op.LT, Op.LTE, Op.BETWEEN, Op.IN, Op.NOT_IN),
    "rfm": (Op.EQ, Op.NE, Op.IN, Op.NOT_IN),
}


def period_between(value: list[Any]) -> list[Any]:
    """[start, end] of an event or metric: two dates (whole UTC days) or two times with zones."""
    if len(value) != 2:
        raise ValueError("between needs [start, end], e.g. [2026-01-01, 2026-01-31] or two ISO times with zones")
    start, end = (scalar(item, "created_at") for item in value)
    kinds = {kind_of(start), kind_of(end)}
    if len(kinds) != 1 or not kinds <= {"date", "datetime"}:
        raise ValueError("between needs two dates (2026-01-31) or two times with zones (2026-01-31T09:00:00Z)")
    if start > end:
        raise ValueError(f"between needs the start first: [{end}, {start}]")
    return [start, end]


def _listed(value: Any, field: str, op: Op) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"op '{op}' needs a list of values, e.g. [en, fa]")
    items = [scalar(item, field) for item in value]
    kinds = {kind_of(item) for item in items}
    if len(kinds) != 1 or kinds & {"other", "datetime"}:
        raise ValueError(f"the values of op '{op}' must be all text, all numbers, all true/false or all dates")
    _fits_field(field, kinds.pop(), op)
    return items


def _single(value: Any, field: str, op: Op) -> Any:
    value = scalar(value, field)
    kind = kind_of(value)
    if kind == "other":
        raise ValueError(f"op '{op}' compares with one value (text, a number, true/false or a date), "
                         "not a list or a mapping")
    if op in TEXT_OPS and (kind != "text" or not value):
        raise ValueError(f"op '{op}' needs some text")
    if op in ORDER_OPS and kind not in ("number", "date", "datetime"):
        raise ValueError(f"op '{op}' compares numbers and dates; for text use eq, in, starts_with "
                         "or contains")
    _fits_field(field, kind, op)
    return value


def _between(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("op 'between' needs [low, high], e.g. [100, 500] or [2026-01-01, 2026-03-31]")
    low, high = (scalar(item, field) for item in value)
    kinds = {kind_of(low), kind_of(high)}
    if len(kinds) != 1 or not kinds <= {"number", "date", "datetime"}:
        raise ValueError("op 'between' needs two numbers or two dates")
    _fits_field(field, kinds.pop(), Op.BETWEEN)
    if low > high:
        raise ValueError(f"op 'between' needs the low end first: [{high}, {low}]")
    return [low, high]


def _fits_field(field: str, kind: str, op: Op) -> None:
    if field == "created_at" and kind not in ("date", "datetime"):
        raise ValueError(f"field 'created_at' is compared with a date (2026-01-31) or a time "
                         f"(2026-01-31T09:00:00Z), not {kind}")
    if field.startswith(("traits.", "properties.")) and kind == "datetime":
        what = "a trait" if field.startswith("traits.") else "an event property"
        raise ValueError(f"{what} is compared with a date (2026-01-31), not a time of day")
    if (field in TEXT_FIELDS or field == "language") and kind != "text":
        raise ValueError(f"field '{field}' holds text: give a text value (in quotes if it looks like "
                         f"a number or a date) for op '{op}'")
