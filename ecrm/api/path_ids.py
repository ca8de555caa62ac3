"""Ids taken from a URL path (`/v1/profiles/{external_id}`, `/v1/orders/{order_id}`): one that
no row can have is answered 404 without a query, since PostgreSQL refuses NUL and a lone
surrogate cannot be encoded at all."""

from __future__ import annotations


def could_be_stored(text: str, max_length: int) -> bool:
    """Whether a column of `max_length` characters could hold `text`."""
    if len(text) > max_length or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
