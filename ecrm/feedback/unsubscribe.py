"""Signed, per-recipient unsubscribe tokens for List-Unsubscribe links (RFC 8058).

A token names the delivery it came from (so the unsubscribe is attributed to the campaign
run) and carries an HMAC-SHA256 tag truncated to 16 bytes, so it cannot be forged or altered.
"""

from __future__ import annotations

import base64
import hmac
import struct

_PACK = struct.Struct(">QQ")
_TAG_BYTES = 16
_DOMAIN = b"unsubscribe:"  # keeps these tags apart from any other HMAC made with the same secret


class InvalidTokenError(ValueError):
    pass


def _tag(key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of `unsubscribe:` + body, truncated. One-shot `hmac.digest` runs in C, about
    twice as fast as copying a keyed `hmac.HMAC` and updating it; the bytes are the same."""
    return hmac.digest(key, _DOMAIN + body, "sha256")[:_TAG_BYTES]


def make_token(secret: str, delivery_id: int, profile_id: int) -> str:
    """URL-safe token for one delivery."""
    return TokenSigner(secret).sign(delivery_id, profile_id)


class TokenSigner:
    """Encodes the key once; `sign` then costs one HMAC and one base64 pass per recipient."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def sign(self, delivery_id: int, profile_id: int) -> str:
        body = _PACK.pack(delivery_id, profile_id)
        return base64.urlsafe_b64encode(body + _tag(self._key, body)).rstrip(b"=").decode()


def read_token(secret: str, token: str) -> tuple[int, int]:
    """Return (delivery_id, profile_id), or raise InvalidTokenError if the token was tampered with."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidTokenError("unsubscribe link is malformed") from exc
    if len(raw) != _PACK.size + _TAG_BYTES:
        raise InvalidTokenError("unsubscribe link is malformed")
    body, tag = raw[: _PACK.size], raw[_PACK.size :]
    if not hmac.compare_digest(_tag(secret.encode(), body), tag):
        raise InvalidTokenError("unsubscribe link signature does not match")
    delivery_id, profile_id = _PACK.unpack(body)
    return delivery_id, profile_id
