"""Signed, per-recipient unsubscribe tokens for List-Unsubscribe links (RFC 8058).

A token names the delivery it came from (so the unsubscribe is attributed to the campaign
run) and carries an HMAC-SHA256 tag truncated to 16 bytes, so it cannot be forged or altered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

_PACK = struct.Struct(">QQ")
_TAG_BYTES = 16


class InvalidTokenError(ValueError):
    pass


def _signer(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode(), b"unsubscribe:", hashlib.sha256)


def make_token(secret: str, delivery_id: int, profile_id: int, signer: hmac.HMAC | None = None) -> str:
    """URL-safe token for one delivery; pass a `signer` from `_signer` to skip re-keying per call."""
    body = _PACK.pack(delivery_id, profile_id)
    mac = (signer or _signer(secret)).copy()
    mac.update(body)
    return base64.urlsafe_b64encode(body + mac.digest()[:_TAG_BYTES]).rstrip(b"=").decode()


class TokenSigner:
    """Keys the HMAC once; `sign` then costs one copy and one update per recipient."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._base = _signer(secret)

    def sign(self, delivery_id: int, profile_id: int) -> str:
        return make_token(self._secret, delivery_id, profile_id, self._base)


def read_token(secret: str, token: str) -> tuple[int, int]:
    """Return (delivery_id, profile_id), or raise InvalidTokenError if the token was tampered with."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidTokenError("unsubscribe link is malformed") from exc
    if len(raw) != _PACK.size + _TAG_BYTES:
        raise InvalidTokenError("unsubscribe link is malformed")
    body, tag = raw[: _PACK.size], raw[_PACK.size :]
    mac = _signer(secret)
    mac.update(body)
    if not hmac.compare_digest(mac.digest()[:_TAG_BYTES], tag):
        raise InvalidTokenError("unsubscribe link signature does not match")
    delivery_id, profile_id = _PACK.unpack(body)
    return delivery_id, profile_id
