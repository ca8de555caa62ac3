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
`not:` is the plain complement. Events, metrics and named segments come later.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

TEXT_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "locale", "time_zone")
PROFILE_FIELDS = (*TEXT_FIELDS, "language", "created_at")
MAX_DEPTH = 32
MAX_DURATION = timedelta(days=36500)
DURATION = re.compile(r"^([0-9]{1,6})([smhdw])$")
ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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
        return value.astimezone(UTC)
    return value


class Rule(BaseModel):
    """One node of the tree: a comparison (`field`, `op`, `value`) or `all` / `any` / `not`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    field: str | None = Field(None, pattern=r"^([a-z_]+|traits\.[A-Za-z0-9_\-]+)$")
    op: Op = Op.EQ
    value: Any = None
    all_: list[Rule] | None = Field(None, alias="all")
    any_: list[Rule] | None = Field(None, alias="any")
    not_: Rule | None = Field(None, alias="not")

    @field_validator("field")
    @classmethod
    def _known_field(cls, field: str | None) -> str | None:
        if field is not None and not field.startswith("traits.") and field not in PROFILE_FIELDS:
            raise ValueError(f"'{field}' is not a profile field; use one of {', '.join(PROFILE_FIELDS)} "
                             "or traits.<name>")
        return field

    @field_validator("op")
    @classmethod
    def _op_fits_field(cls, op: Op, info: ValidationInfo) -> Op:
        field = info.data.get("field")
        if field == "language" and op not in (Op.EQ, Op.NE, *LIST_OPS):
            raise ValueError("field 'language' takes eq, ne, in or not_in")
        if field in TEXT_FIELDS and op in (*ORDER_OPS, *AGE_OPS):
            raise ValueError(f"field '{field}' holds text: use eq, ne, in, not_in, contains, starts_with, "
                             "exists or not_exists")
        if field == "created_at" and op in (*LIST_OPS, *TEXT_OPS):
            raise ValueError("field 'created_at' is a time: use older_than, newer_than, gt, gte, lt, lte, "
                             "between, eq or ne")
        return op

    @field_validator("value")
    @classmethod
    def _value_fits_op(cls, value: Any, info: ValidationInfo) -> Any:
        op, field = info.data.get("op"), info.data.get("field")
        if op is None or field is None:  # reported on `op` / `field`, or not a comparison at all
            return value
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

    @model_validator(mode="after")
    def _one_form(self) -> Rule:
        forms = [name for name, given in (("field", self.field), ("all", self.all_), ("any", self.any_),
                                          ("not", self.not_)) if given is not None]
        if len(forms) != 1:
            raise ValueError("a rule is either a comparison {field, op, value} or one of all: [...], "
                             f"any: [...], not: {{...}}; got {', '.join(forms) or 'none of them'}")
        if self.field is None and (self.value is not None or self.op is not Op.EQ):
            raise ValueError("op and value belong to a comparison with a field")
        if self.depth() > MAX_DEPTH:
            raise ValueError(f"rules nested more than {MAX_DEPTH} levels deep")
        return self

    def depth(self) -> int:
        children = self.children()
        return 1 + max((child.depth() for child in children), default=0)

    def children(self) -> list[Rule]:
        return self.all_ or self.any_ or ([self.not_] if self.not_ is not None else [])


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
    if field.startswith("traits.") and kind == "datetime":
        raise ValueError("a trait is compared with a date (2026-01-31), not a time of day")
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
        if self.root().depth() > MAX_DEPTH:
            raise ValueError(f"rules nested more than {MAX_DEPTH} levels deep")
        return self

    def root(self) -> Rule:
        """The whole audience as one rule (no rules at all: everyone)."""
        if self.any_ is not None:
            return Rule(any_=self.any_)
        if self.not_ is not None:
            return Rule(not_=self.not_)
        return Rule(all_=self.all_ if self.all_ is not None else (self.rules or []))
