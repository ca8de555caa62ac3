"""Web push message encryption (RFC 8291): one `aes128gcm` record (RFC 8188) per message, made
with `cryptography` primitives.

For each message: a new P-256 key pair, ECDH with the browser's `p256dh` key, the browser's
`auth` secret and both public keys into the input key (HKDF, RFC 8291 section 3.4), a random
16-byte salt into the content key and nonce (RFC 8188 section 2.2), AES-128-GCM over the
payload and the last-record delimiter 0x02. The body is the header (salt, record size, our
public key as key id) followed by that single record. Of about 120 µs a message here, the
ECDH is half and the new key pair and the check of the browser's point most of the rest: none of
it can be left out, so the rest is kept to one decode of each key and no per-message setup.
"""

from __future__ import annotations

import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ecrm.push import vapid

RECORD_SIZE = 4096  # the largest body push services must take (RFC 8030 section 7.2)
HEADER_BYTES = 16 + 4 + 1 + vapid.POINT_BYTES  # salt, record size, key id length, key id
TAG_BYTES = 16
MAX_PAYLOAD = RECORD_SIZE - HEADER_BYTES - TAG_BYTES - 1  # 3,993 bytes of JSON, one delimiter byte
_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00"
_NONCE_INFO = b"Content-Encoding: nonce\x00"
_SHA256 = hashes.SHA256()
_RECORD_SIZE_AND_ID_LENGTH = struct.pack(">IB", RECORD_SIZE, vapid.POINT_BYTES)
_ECDH = ec.ECDH()


def body_size(payload_bytes: int) -> int:
    """The size of the encrypted body for a payload of `payload_bytes`."""
    return HEADER_BYTES + payload_bytes + 1 + TAG_BYTES


def encrypt(payload: bytes, p256dh: str, auth: str) -> bytes:
    """The request body carrying `payload` to the subscription with these keys (base64url):
    sealed with a key pair and a salt made for this message alone."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a push payload may hold {MAX_PAYLOAD} bytes, this one has {len(payload)}")
    receiver_bytes = vapid.b64url_decode(p256dh)
    receiver = vapid.public_key_from_bytes(receiver_bytes)
    return seal(payload, receiver, receiver_bytes, vapid.b64url_decode(auth), ec.generate_private_key(vapid.CURVE),
                os.urandom(16))


def seal(payload: bytes, receiver: ec.EllipticCurvePublicKey, receiver_bytes: bytes, auth_secret: bytes,
         ours: ec.EllipticCurvePrivateKey, salt: bytes) -> bytes:
    """The body for `payload` with the sender key pair `ours` and `salt` given: `encrypt` passes
    fresh ones; a test passes RFC 8291's example ones to get its bytes."""
    our_bytes = ours.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    secret = ours.exchange(_ECDH, receiver)
    ikm = _hkdf(auth_secret, _KEY_INFO + receiver_bytes + our_bytes, 32, secret)
    key, nonce = _hkdf(salt, _CEK_INFO, 16, ikm), _hkdf(salt, _NONCE_INFO, 12, ikm)
    record = AESGCM(key).encrypt(nonce, payload + b"\x02", None)
    return salt + _RECORD_SIZE_AND_ID_LENGTH + our_bytes + record


def _hkdf(salt: bytes, info: bytes, length: int, ikm: bytes) -> bytes:
    return HKDF(algorithm=_SHA256, length=length, salt=salt, info=info).derive(ikm)
