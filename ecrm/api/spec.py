"""What each route takes and answers, read by `/openapi.json`: a handler is decorated with
`@operation(...)` naming the pydantic models it reads and answers with (the same classes its
body uses), and `ecrm.api.openapi` walks the app's routes and these notes. A route without
one fails a test, as a route without a scope does (`ecrm.api.auth`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

F = TypeVar("F", bound=Callable[..., Any])
ATTRIBUTE = "__ecrm_operation__"


class ErrorOut(BaseModel):
    """Every 4xx and 5xx answer: a sentence saying what is wrong, and the field when one is."""

    model_config = ConfigDict(extra="allow")

    error: str
    field: str | None = None


@dataclass(frozen=True)
class Operation:
    summary: str
    request: type[BaseModel] | None = None  # a JSON body of this model
    responses: Mapping[int, type[BaseModel] | None] = field(default_factory=dict)  # None: no JSON body
    headers: Mapping[str, tuple[str, Any]] = field(default_factory=dict)  # request header -> (meaning, type)
    content_type: str = "application/json"  # of the 2xx answers


def operation(summary: str, request: type[BaseModel] | None = None,
              responses: Mapping[int, type[BaseModel] | None] | None = None, **options: Any) -> Callable[[F], F]:
    """Note what a handler takes and answers (put it under `@routes.post(...)`)."""

    def note(handler: F) -> F:
        setattr(handler, ATTRIBUTE, Operation(summary, request, responses or {}, **options))
        return handler

    return note


def operation_of(handler: Any) -> Operation | None:
    return getattr(handler, ATTRIBUTE, None)
