"""Who a site visitor is, proven: a tracked email link's token, or a shop server's signature.

An email link may carry `ecrm_c=<token>` (the `site_link` template function adds it): the token
names the recipient's profile and carries an HMAC-SHA256 tag under the secret key, in the style
of unsubscribe tokens (lowercase hex of a length byte, the id in as few bytes as it needs and a
16-byte tag) but tagged under its own prefix, so neither kind of token passes as the other.
It says who clicked, nothing more: it cannot unsubscribe anyone.

An `identify` by external id is a claim the page makes; with `site.identify_secret` set, it
must come with `signature`, the hex HMAC-SHA256 of the external id under that secret, which the
shop's server computes for its logged-in customer (the browser never sees the secret).
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit, urlunsplit

_DOMAIN = b"site-click:"
CLICK_PARAMETER = "ecrm_c"  # the script reads it from the landing page's address
_TAG_BYTES = 16
_MAX_ID = 2**63 - 1


def make_click_token(secret: str, profile_id: int) -> str:
    profile = profile_id.to_bytes((profile_id.bit_length() + 7) // 8 or 1, "big")
    body = bytes((len(profile),)) + profile
    return (body + _tag(secret, body)).hex()


def read_click_token(secret: str, token: str) -> int | None:
    """The profile id a token names, or None when it is not one of ours."""
    try:
        raw = bytes.fromhex(token)
    except ValueError:
        return None
    if not raw or not 1 <= raw[0] <= 8 or len(raw) != 1 + raw[0] + _TAG_BYTES:
        return None
    body, tag = raw[: 1 + raw[0]], raw[1 + raw[0]:]
    if not hmac.compare_digest(_tag(secret, body), tag):
        return None
    profile_id = int.from_bytes(body[1:], "big")
    return profile_id if 0 < profile_id <= _MAX_ID else None


def _tag(secret: str, body: bytes) -> bytes:
    return hmac.digest(secret.encode(), _DOMAIN + body, "sha256")[:_TAG_BYTES]


def identify_signature(secret: str, external_id: str) -> str:
    """What the shop's server puts in `identify`'s `signature` for `external_id`."""
    return hmac.new(secret.encode(), external_id.encode(), hashlib.sha256).hexdigest()


def signature_matches(secret: str, external_id: str, signature: str) -> bool:
    return hmac.compare_digest(identify_signature(secret, external_id), signature.strip().lower())


class SiteLink:
    """`{{ site_link("https://shop.example/p/1") }}` in an email template: the URL with the
    recipient's `ecrm_c` token, so the site script knows who clicked. The token is made only
    when a template calls it, so templates without links to the shop pay nothing."""

    __slots__ = ("_profile_id", "_secret")

    def __init__(self, secret: str, profile_id: int) -> None:
        self._secret, self._profile_id = secret, profile_id

    def __call__(self, url: str) -> str:
        parts = urlsplit(str(url))
        token = f"{CLICK_PARAMETER}={make_click_token(self._secret, self._profile_id)}"
        return urlunsplit(parts._replace(query=f"{parts.query}&{token}" if parts.query else token))
