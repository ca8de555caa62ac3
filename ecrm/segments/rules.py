"""Audience rules as marketers write them in a campaign's `audience:` block: a tree of
comparisons on profile fields and traits, combined with `all`, `any` and `not`.

    audience:
      all:                                   # every rule must hold; `rules:` means the same
        - {field: language, op: in, value: [fa]}
        - any:                               # at least one must hold
            - {field: traits.city, op: starts_with, value: "Teh"}
            - {field: traits.points, op: between, value: [100, 500]}
        - not: {field: created_at, op: newer_than, value: 30d}
      consent: required                      # the channel's consent must be granted (the default)

`field` is a profile column, `language` (the locale's language: `fa` matches `fa` and `fa_IR`)
or `traits.<name>`. A missing or null value fails every comparison (`ne` and `not_in` too);
`not:` is the plain complement. Besides comparisons a rule may be:

    - {event: cart_updated, within: 2h, count: {gte: 2}, where: [{field: properties.total, op: gt, value: 100}]}
    - {event: cart_updated, then_not: order_placed, within: 2h}      # a sequence
    - {metric: total_spent, currency: IRR, window: this_year, op: gt, value: 5000000}
    - {metric: rfm, op: eq, value: "5-5-5"}
    - {reachable: sms}
    - {segment: vip}                                                  # segments/vip.yaml

`definition` (of a segment) and `rates` (of a money metric without a currency) are not written
by hand: `ecrm.segments.resolve` fills them when a file is loaded, so a rule tree compiles
without reading files or settings, and a stored run keeps the rules it was sent with.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ecrm.orders.money import is_currency
from ecrm.segments.vocabulary import (
    DAYS_METRICS,
    MAX_DAYS,
    MONEY_METRICS,
    NUMBER_METRICS,
    QUINTILE_METRICS,
    TIME_METRICS,
    CountTest,
    Metric,
    Window,
)
from ecrm.types import ChannelKind

TEXT_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "locale", "time_zone")
PROFILE_FIELDS = (*TEXT_FIELDS, "language", "created_at")
MAX_DEPTH = 32
MAX_DURATION = timedelta(days=36500)
DURATION = re.compile(r"^([0-9]{1,6})([smhdw])$")
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
EVENT_NAME = r"^[a-z0-9_.:]{1,100}$"  # as POST /v1/events takes it
SEGMENT_NAME = r"^[a-z0-9][a-z0-9_\-]{0,99}$"
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


class ConsentPolicy(StrEnum):
    REQUIRED = "required"
    IGNORE = "ignore"


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


def _scalar(value: Any, field: str) -> Any:
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


class Rule(BaseModel):
    """One node of the tree: a comparison (`field`, `op`, `value`), an event, a metric,
    `reachable`, a named `segment`, or `all` / `any` / `not`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    field: str | None = Field(None, pattern=r"^([a-z_]+|traits\.[A-Za-z0-9_\-]+)$")
    metric: Metric | None = None
    op: Op = Op.EQ
    value: Any = None
    currency: str | None = None
    event: str | None = Field(None, pattern=EVENT_NAME)
    then_not: str | None = Field(None, pattern=EVENT_NAME)
    within: str | None = None
    between: list[Any] | None = None
    window: Window | None = None
    count: CountTest | None = None
    where: list[PropertyTest] | None = Field(None, max_length=32)
    reachable: ChannelKind | None = None
    segment: str | None = Field(None, pattern=SEGMENT_NAME)
    definition: Rule | None = None
    rates: dict[str, Decimal] | None = None
    all_: list[Rule] | None = Field(None, alias="all")
    any_: list[Rule] | None = Field(None, alias="any")
    not_: Rule | None = Field(None, alias="not")

    @field_validator("field")
    @classmethod
    def _known_field(cls, field: str | None) -> str | None:
        if field is not None and not field.startswith("traits.") and field not in PROFILE_FIELDS:
            raise ValueError(f"'{field}' is not a profile field; use one of {', '.join(PROFILE_FIELDS)} "
                             "or traits.<name> (properties.<name> belongs in an event's where:)")
        return field

    @field_validator("op")
    @classmethod
    def _op_fits_field(cls, op: Op, info: ValidationInfo) -> Op:
        metric = info.data.get("metric")
        if metric is not None:
            return metric_op(metric, op)
        return field_op(info.data.get("field"), op)

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op, field, metric = info.data.get("op"), info.data.get("field"), info.data.get("metric")
        if op is None or (field is None and metric is None):  # reported on `op`, or not a comparison
            return value
        return metric_value(metric, op, value) if metric is not None else field_value(field or "", op, value)

    @field_validator("currency")
    @classmethod
    def _currency(cls, currency: str | None) -> str | None:
        if currency is not None and not is_currency(currency):
            raise ValueError(f"'{currency}' is not an ISO 4217 currency code, e.g. EUR, IRR, THB")
        return currency

    @field_validator("within")
    @classmethod
    def _duration(cls, within: str | None) -> str | None:
        if within is not None:
            parse_duration(within)
        return within

    @field_validator("between")
    @classmethod
    def _period(cls, between: list[Any] | None) -> list[Any] | None:
        return None if between is None else period_between(between)

    @model_validator(mode="after")
    def _one_form(self) -> Rule:
        given = [name for name in FORMS if getattr(self, name) is not None]
        if len(given) != 1:
            shown = ", ".join(name.rstrip("_") for name in given) or "none of them"
            raise ValueError("a rule is either a comparison {field, op, value}, an event, a metric, reachable, "
                             f"a segment, or one of all: [...], any: [...], not: {{...}}; got {shown}")
        used = {name for name in type(self).model_fields if name != "op" and getattr(self, name) is not None}
        used |= {"op"} if self.op is not Op.EQ else set()
        stray = sorted(used - FORMS[given[0]] - ({"op"} if "value" in FORMS[given[0]] else set()))
        if stray:
            raise ValueError(f"{', '.join(stray)} does not go with {given[0].rstrip('_')}: "
                             f"{LABELS[given[0]]} takes {', '.join(sorted(FORMS[given[0]] - HIDDEN))}")
        check_form(self)
        if self.depth() > MAX_DEPTH:
            raise ValueError(f"rules nested more than {MAX_DEPTH} levels deep")
        return self

    def depth(self) -> int:
        children = self.children()
        return 1 + max((child.depth() for child in children), default=0)

    def children(self) -> list[Rule]:
        if self.definition is not None:
            return [self.definition]
        return self.all_ or self.any_ or ([self.not_] if self.not_ is not None else [])


class PropertyTest(BaseModel):
    """One condition of an event's `where:` on `properties.<name>`, read like a trait."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(pattern=r"^properties\.[A-Za-z0-9_\-]+$")
    op: Op = Op.EQ
    value: Any = None

    @field_validator("op")
    @classmethod
    def _op(cls, op: Op) -> Op:
        return field_op("properties.", op)

    @field_validator("value")
    @classmethod
    def _value(cls, value: Any, info: ValidationInfo) -> Any:
        op, field = info.data.get("op"), info.data.get("field")
        return value if op is None or field is None else field_value(field, op, value)

    @model_validator(mode="after")
    def _needs_value(self) -> PropertyTest:
        if self.value is None and self.op not in NO_VALUE_OPS:
            raise ValueError(f"op '{self.op}' needs a value")
        return self


HIDDEN = frozenset({"definition", "rates"})
LABELS = {"field": "a comparison", "metric": "a metric rule", "event": "an event rule", "reachable": "reachable",
          "segment": "a segment rule", "all_": "all", "any_": "any", "not_": "not"}
FORMS: dict[str, frozenset[str]] = {
    "field": frozenset({"field", "op", "value"}),
    "metric": frozenset({"metric", "op", "value", "currency", "within", "between", "window", "rates"}),
    "event": frozenset({"event", "then_not", "within", "between", "window", "count", "where"}),
    "reachable": frozenset({"reachable"}),
    "segment": frozenset({"segment", "definition"}),
    "all_": frozenset({"all_"}),
    "any_": frozenset({"any_"}),
    "not_": frozenset({"not_"}),
}


def check_form(rule: Rule) -> None:
    """What the keys of one form ask of each other."""
    periods = [key for key in ("within", "between", "window") if getattr(rule, key) is not None]
    if len(periods) > 1:
        raise ValueError(f"give one of within, between or window, not {' and '.join(periods)}")
    if rule.metric is not None and rule.value is None and rule.op not in NO_VALUE_OPS:
        raise ValueError(f"op '{rule.op}' needs a value")
    if rule.currency is not None and rule.metric not in MONEY_METRICS:
        raise ValueError(f"currency goes with {', '.join(MONEY_METRICS)}")
    if rule.then_not is not None and (rule.within is None or rule.count is not None or len(periods) != 1):
        raise ValueError("a sequence is {event: A, then_not: B, within: 2h} (with where: if needed): "
                         "within says how soon B must follow A")


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
    start, end = (_scalar(item, "created_at") for item in value)
    kinds = {kind_of(start), kind_of(end)}
    if len(kinds) != 1 or not kinds <= {"date", "datetime"}:
        raise ValueError("between needs two dates (2026-01-31) or two times with zones (2026-01-31T09:00:00Z)")
    if start > end:
        raise ValueError(f"between needs the start first: [{end}, {start}]")
    return [start, end]


def _listed(value: Any, field: str, op: Op) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"op '{op}' needs a list of values, e.g. [en, fa]")
    items = [_scalar(item, field) for item in value]
    kinds = {kind_of(item) for item in items}
    if len(kinds) != 1 or kinds & {"other", "datetime"}:
        raise ValueError(f"the values of op '{op}' must be all text, all numbers, all true/false or all dates")
    _fits_field(field, kinds.pop(), op)
    return items


def _single(value: Any, field: str, op: Op) -> Any:
    value = _scalar(value, field)
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
    low, high = (_scalar(item, field) for item in value)
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


class Audience(BaseModel):
    """`rules:` (the original flat list) is shorthand for `all:`; give one of rules, all, any, not."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    rules: list[Rule] | None = None
    all_: list[Rule] | None = Field(None, alias="all")
    any_: list[Rule] | None = Field(None, alias="any")
    not_: Rule | None = Field(None, alias="not")
    consent: ConsentPolicy = ConsentPolicy.REQUIRED

    @model_validator(mode="after")
    def _one_root(self) -> Audience:
        given = [name for name, value in (("rules", self.rules), ("all", self.all_), ("any", self.any_),
                                          ("not", self.not_)) if value is not None]
        if len(given) > 1:
            raise ValueError("give one of rules, all, any or not at the top of the audience, "
                             f"not {' and '.join(given)}")
        if self.root().depth() > MAX_DEPTH:  # named segments count with the rules they stand for
            raise ValueError(f"rules nested more than {MAX_DEPTH} levels deep")
        return self

    def root(self) -> Rule:
        """The whole audience as one rule (no rules at all: everyone)."""
        if self.any_ is not None:
            return Rule(any_=self.any_)
        if self.not_ is not None:
            return Rule(not_=self.not_)
        return Rule(all_=self.all_ if self.all_ is not None else (self.rules or []))
