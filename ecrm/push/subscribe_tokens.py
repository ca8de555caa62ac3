"""Subscribe tokens: what lets a browser store its push subscription without an API key.

A browser must never hold an API key, yet a subscription must land on the right profile (or
anyone could attach their browser to someone else's). The shop's backend, which knows who is
logged in, asks ecrm for a token for that customer (`POST /v1/push/tokens`, an `ingest` key) and
puts it in the page; the subscribe script posts it with the subscription to the public
`POST /push/subscriptions`. A token names one external id, expires (an hour by default, a week
at most) and is signed with the secret key under a domain of its own:

    base64url(external_id) "." expiry (unix seconds) "." hex(HMAC-SHA256(secret, "push-subscribe:" + both)[:16])

so the shop can also mint tokens itself without a round trip to ecrm.
"""

from __future__ import annotations

import hmac

from ecrm.push.vapid import b64url_decode, b64url_encode

DOMAIN = b"push-subscribe:"
LIFETIME = 3600
MAX_LIFETIME = 7 * 24 * 3600


class InvalidSubscribeToken(ValueError):
    pass


def make_token(secret: str, external_id: str, expires: int) -> str:
    body = f"{b64url_encode(external_id.encode('utf-8'))}.{expires}"
    return f"{body}.{_tag(secret, body)}"


def read_token(secret: str, token: str, now: float) -> str:
    """The external id a valid, unexpired token names; InvalidSubscribeToken saying why not."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isascii() or not parts[1].isdigit() or len(parts[1]) > 12:
        raise InvalidSubscribeToken("not a subscribe token (expected three parts: id, expiry, signature)")
    body = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_tag(secret, body), parts[2]):
        raise InvalidSubscribeToken("the token's signature does not match: mint a new one")
    expires = int(parts[1])
    if expires <= now:
        raise InvalidSubscribeToken("the token has expired: the page should mint a new one")
    if expires > now + MAX_LIFETIME:
        raise InvalidSubscribeToken("the token lives longer than a week: mint one with a nearer expiry")
    try:
        return b64url_decode(parts[0]).decode("utf-8")
    except ValueError:  # UnicodeDecodeError included; signed, so only a minting bug gets here
        raise InvalidSubscribeToken("the token's external id is not UTF-8") from None


def _tag(secret: str, body: str) -> str:
    return hmac.digest(secret.encode(), DOMAIN + body.encode(), "sha256")[:16].hex()
