"""Audience rules as marketers write them in a campaign's `audience:` block.

    audience:
      rules:                       # every rule must hold
        - {field: locale, op: in, value: [en, fa, th]}
        - {field: traits.vip, op: eq, value: true}
      consent: required            # the channel's consent must be granted (the default)

`field` is a profile column, `language` (the locale's language: `fa` matches `fa` and `fa_IR`)
or `traits.<name>`. The full rule language (events, time windows, any/none) grows from this model.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROFILE_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "locale", "language", "time_zone",
                  "created_at")


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"
    CONTAINS = "contains"


LIST_OPS = (Op.IN, Op.NOT_IN)
NO_VALUE_OPS = (Op.EXISTS, Op.NOT_EXISTS)


class ConsentPolicy(StrEnum):
    REQUIRED = "required"
    IGNORE = "ignore"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(pattern=r"^([a-z_]+|traits\.[A-Za-z0-9_\-]+)$")
    op: Op = Op.EQ
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> Rule:
        if not self.field.startswith("traits.") and self.field not in PROFILE_FIELDS:
            raise ValueError(f"field '{self.field}' is not a profile field; use one of "
                             f"{', '.join(PROFILE_FIELDS)} or traits.<name>")
        if self.field == "language" and self.op not in (Op.EQ, Op.NE, *LIST_OPS):
            raise ValueError("field 'language' takes eq, ne, in or not_in")
        if self.op in LIST_OPS and not isinstance(self.value, list):
            raise ValueError(f"op '{self.op}' needs a list value, e.g. [en, fa]")
        if self.op in NO_VALUE_OPS and self.value is not None:
            raise ValueError(f"op '{self.op}' takes no value")
        if self.op not in NO_VALUE_OPS and self.value is None:
            raise ValueError(f"op '{self.op}' needs a value")
        return self


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: list[Rule] = []
    consent: ConsentPolicy = ConsentPolicy.REQUIRED
