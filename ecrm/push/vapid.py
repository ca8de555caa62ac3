"""VAPID application server keys (RFC 8292): a P-256 key pair, both halves as base64url without
padding.

The public key is the uncompressed point (65 bytes, starting 0x04), which is what a browser's
`pushManager.subscribe({applicationServerKey})` takes; the private key is the raw 32-byte
scalar, the form the `web-push` libraries print and `py_vapid` reads. `ecrm push keys` makes a
pair (`new_key_pair`); the settings check a configured pair with `check_pair`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

CURVE = ec.SECP256R1()
POINT_BYTES = 65  # 0x04 || X || Y
SCALAR_BYTES = 32


@dataclass(frozen=True)
class VapidKeys:
    public_key: str  # base64url uncompressed point
    private_key: str  # base64url 32-byte scalar


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Base64url with or without padding; ValueError for anything else (standard base64's `+/`
    included: browsers give keys in base64url)."""
    if not text.isascii() or any(c in text for c in "+/ \t\r\n"):
        raise ValueError("not base64url (letters, digits, '-' and '_')")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64url (letters, digits, '-' and '_')") from None


def public_key_from(text: str) -> ec.EllipticCurvePublicKey:
    """A base64url uncompressed P-256 point; ValueError saying what is wrong."""
    return public_key_from_bytes(b64url_decode(text))


def public_key_from_bytes(raw: bytes) -> ec.EllipticCurvePublicKey:
    """An uncompressed P-256 point (already decoded); ValueError saying what is wrong."""
    if len(raw) != POINT_BYTES or raw[0] != 0x04:
        raise ValueError(f"must decode to a {POINT_BYTES}-byte uncompressed P-256 point starting 0x04, "
                         f"not {len(raw)} bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(CURVE, raw)
    except ValueError:
        raise ValueError("is not a point on the P-256 curve") from None


def private_key_from(text: str) -> ec.EllipticCurvePrivateKey:
    """A base64url 32-byte P-256 scalar; ValueError saying what is wrong."""
    raw = b64url_decode(text)
    if len(raw) != SCALAR_BYTES:
        raise ValueError(f"must decode to a {SCALAR_BYTES}-byte P-256 private key, not {len(raw)} bytes")
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), CURVE)
    except ValueError:
        raise ValueError("is not a valid P-256 private key (out of range)") from None


def encode_public(key: ec.EllipticCurvePublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return b64url_encode(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def encode_private(key: ec.EllipticCurvePrivateKey) -> str:
    return b64url_encode(key.private_numbers().private_value.to_bytes(SCALAR_BYTES, "big"))


def new_key_pair() -> VapidKeys:
    key = ec.generate_private_key(CURVE)
    return VapidKeys(public_key=encode_public(key.public_key()), private_key=encode_private(key))


def pair_matches(public_key: str, private_key: str) -> bool:
    """Whether the private key's public half is `public_key` (both already valid)."""
    return encode_public(private_key_from(private_key).public_key()) == encode_public(public_key_from(public_key))


def setup_lines(keys: VapidKeys) -> list[str]:
    """What `ecrm push keys` prints: the pair and where each half goes."""
    return [
        "a new VAPID key pair for web push.",
        "the private key goes in the environment (or .env), never in config/ecrm.yaml:",
        f"  ECRM_PUSH__VAPID_PRIVATE_KEY={keys.private_key}",
        "the public key and your contact go in config/ecrm.yaml:",
        f"  push:\n    vapid_public_key: {keys.public_key}\n    subject: mailto:you@shop.example",
        "browsers take the public key as the applicationServerKey of pushManager.subscribe().",
        "changing the pair later invalidates every subscription made with the old public key.",
    ]
