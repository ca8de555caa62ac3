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
without reading files or settings, and a stored run keeps the rules it was sent with. Nor is
`ranked` (an RFM rule read from the stored ranking, `ecrm.segments.rankings`).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ecrm.orders.money import is_currency
from ecrm.segments.values import (
    NO_VALUE_OPS,
    PROFILE_FIELDS,
    Op,
    field_op,
    field_value,
    metric_op,
    metric_value,
    parse_duration,
    period_between,
)
from ecrm.segments.vocabulary import MONEY_METRICS, QUINTILE_METRICS, CountTest, Metric, Window
from ecrm.types import ChannelKind

__all__ = ["EVENT_NAME", "MAX_DEPTH", "SEGMENT_NAME", "Audience", "ConsentPolicy", "Op", "PropertyTest", "Rule",
           "check_form", "parse_duration"]  # Op and parse_duration live in ecrm.segments.values

MAX_DEPTH = 32
EVENT_NAME = r"^[a-z0-9_.:]{1,100}$"  # as POST /v1/events takes it
SEGMENT_NAME = r"^[a-z0-9][a-z0-9_\-]{0,99}$"


class ConsentPolicy(StrEnum):
    REQUIRED = "required"
    IGNORE = "ignore"


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
    ranked: bool | None = None
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


HIDDEN = frozenset({"definition", "rates", "ranked"})
LABELS = {"field": "a comparison", "metric": "a metric rule", "event": "an event rule", "reachable": "reachable",
          "segment": "a segment rule", "all_": "all", "any_": "any", "not_": "not"}
FORMS: dict[str, frozenset[str]] = {
    "field": frozenset({"field", "op", "value"}),
    "metric": frozenset({"metric", "op", "value", "currency", "within", "between", "window", "rates", "ranked"}),
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

    @property
    def ranks_everyone(self) -> bool:
        """Whether the rules rank profiles against each other (RFM quintiles), named segments'
        rules included: one profile's order then moves other profiles in or out too."""
        return _ranks(self.root())

    def root(self) -> Rule:
        """The whole audience as one rule (no rules at all: everyone)."""
        if self.any_ is not None:
            return Rule(any_=self.any_)
        if self.not_ is not None:
            return Rule(not_=self.not_)
        return Rule(all_=self.all_ if self.all_ is not None else (self.rules or []))


def _ranks(rule: Rule) -> bool:
    if rule.metric is not None and (rule.metric is Metric.RFM or rule.metric in QUINTILE_METRICS):
        return True
    return any(_ranks(child) for child in rule.children())
