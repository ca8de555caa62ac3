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
_DOMAIN = b"unsubscribe:"  # keeps these tags apart from any other HMAC made with the same secret
_BLOCK = 64  # SHA-256 block size
_IPAD, _OPAD = bytes(x ^ 0x36 for x in range(256)), bytes(x ^ 0x5C for x in range(256))


class InvalidTokenError(ValueError):
    pass


def _tag(key: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of `unsubscribe:` + body, truncated to `_TAG_BYTES`."""
    return hmac.digest(key, _DOMAIN + body, "sha256")[:_TAG_BYTES]


def make_token(secret: str, delivery_id: int, profile_id: int) -> str:
    """URL-safe token for one delivery."""
    return TokenSigner(secret).sign(delivery_id, profile_id)


class TokenSigner:
    """Signs tokens for one secret, at about half the cost of `hmac` per token.

    HMAC is H((K ^ opad) + H((K ^ ipad) + message)) (RFC 2104). Both padded-key blocks, and the
    `unsubscribe:` prefix, are hashed once here; each token then costs two SHA-256 state copies
    and finishes. (One-shot `hmac.digest` re-hashes the key pads every call and measured slower
    than even `hmac.HMAC.copy()`.) The tag is the same bytes `_tag` computes, and tests check it."""

    def __init__(self, secret: str) -> None:
        key = secret.encode()
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD) + _DOMAIN)
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def sign(self, delivery_id: int, profile_id: int) -> str:
        body = _PACK.pack(delivery_id, profile_id)
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(body)
        outer.update(inner.digest())
        return base64.urlsafe_b64encode(body + outer.digest()[:_TAG_BYTES]).rstrip(b"=").decode()


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
