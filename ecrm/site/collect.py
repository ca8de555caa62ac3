"""What the site script sends to `POST /t/collect`: the site key, the visitor id from its
cookie, and up to `MAX_EVENTS` events, each a page view, a product view or an identify.

Fields are bounded (URLs 2,000 characters, product fields 200) so one request stays small.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ecrm.profiles.ingest import Email, JsonObject, Text, no_nul

MAX_EVENTS = 20
PAGE_VIEWED, PRODUCT_VIEWED = "page_viewed", "product_viewed"

Url = Annotated[str, StringConstraints(max_length=2000), AfterValidator(no_nul)]
Short = Annotated[str, StringConstraints(max_length=300), AfterValidator(no_nul)]
VisitorId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageView(_Event):
    type: Literal["page"]
    url: Url
    title: Short | None = None
    referrer: Url | None = None


class ProductView(_Event):
    type: Literal["product"]
    url: Url
    product: Annotated[JsonObject, Field(max_length=20)]


class Identify(_Event):
    """Who the visitor is: a tracked email link's token (`click`), an external id (signed by the
    shop's server when `site.identify_secret` is set), or an email the visitor typed in a form."""

    type: Literal["identify"]
    click: Annotated[str, StringConstraints(max_length=100)] | None = None
    external_id: Text | None = None
    signature: Annotated[str, StringConstraints(max_length=128)] | None = None
    email: Email | None = None


SiteEvent = Annotated[PageView | ProductView | Identify, Field(discriminator="type")]


class CollectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: Annotated[str, StringConstraints(max_length=64)]
    v: VisitorId
    events: list[SiteEvent] = Field(min_length=1, max_length=MAX_EVENTS)


def event_properties(event: PageView | ProductView) -> tuple[str, dict[str, Any]]:
    """The stored event's name and properties."""
    if isinstance(event, PageView):
        found = {"url": event.url, "title": event.title, "referrer": event.referrer}
        return PAGE_VIEWED, {key: value for key, value in found.items() if value}
    return PRODUCT_VIEWED, {"url": event.url, **event.product}
