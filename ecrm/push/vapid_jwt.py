"""VAPID tokens (RFC 8292): the ES256 JWT an application server shows a push service, and the
`Authorization: vapid t=<jwt>, k=<public key>` header that carries it.

A token names its push service (`aud`, the endpoint's origin), an expiry (`exp`, at most 24 h
ahead) and our contact (`sub`). Signing costs about 31 µs, so `VapidTokens` keeps one header per
origin and signs again only when less than `RENEW_BEFORE` of its life is left. `verify` is the
push service's side, used by the local push service (`ecrm.peers.push_service`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ecrm.push import vapid

LIFETIME = 12 * 3600  # seconds a token is valid
RENEW_BEFORE = 3600  # sign a new one when less than this is left
_HEADER = vapid.b64url_encode(b'{"typ":"JWT","alg":"ES256"}')
_ES256 = ec.ECDSA(hashes.SHA256())


class VapidTokens:
    """`Authorization` header values per push-service origin, signed with one VAPID key pair."""

    def __init__(self, private_key: str, public_key: str, subject: str,
                 now: Callable[[], float] = time.time) -> None:
        self._key = vapid.private_key_from(private_key)
        self.public_key, self.subject, self._now = public_key, subject, now
        self._headers: dict[str, tuple[str, float]] = {}  # origin -> (header, renew at)

    def header(self, origin: str) -> str:
        found = self._headers.get(origin)
        now = self._now()
        if found is not None and now < found[1]:
            return found[0]
        expires = int(now) + LIFETIME
        token = sign({"aud": origin, "exp": expires, "sub": self.subject}, self._key)
        value = f"vapid t={token}, k={self.public_key}"
        self._headers[origin] = (value, expires - RENEW_BEFORE)
        return value


def sign(claims: dict[str, object], key: ec.EllipticCurvePrivateKey) -> str:
    """A compact JWS with ES256: the signature is r || s, 32 bytes each (RFC 7518 section 3.4)."""
    signing_input = f"{_HEADER}.{vapid.b64url_encode(json.dumps(claims, separators=(',', ':')).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), _ES256))
    return f"{signing_input}.{vapid.b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@dataclass(frozen=True)
class Credentials:
    token: str
    public_key: str


def parse_header(value: str) -> Credentials:
    """`vapid t=..., k=...` into its parts; ValueError when it is not that scheme."""
    scheme, _, params = value.partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError(f"expected the vapid scheme, not {scheme!r}")
    found = dict(part.strip().partition("=")[::2] for part in params.split(","))
    if not found.get("t") or not found.get("k"):
        raise ValueError("expected both t= (the JWT) and k= (the public key)")
    return Credentials(found["t"], found["k"])


def verify(value: str, audience: str, now: float) -> dict[str, object]:
    """The claims of a valid `Authorization` header for the push service at `audience`; ValueError
    naming what is wrong: signature (ES256 with the k= key), aud, exp (future, within 24 h), sub."""
    credentials = parse_header(value)
    key = vapid.public_key_from(credentials.public_key)
    try:
        header, claims, signature = credentials.token.split(".")
        raw = vapid.b64url_decode(signature)
        if json.loads(vapid.b64url_decode(header)).get("alg") != "ES256" or len(raw) != 64:
            raise ValueError("not an ES256 JWT")
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        key.verify(der, f"{header}.{claims}".encode("ascii"), _ES256)
        payload = json.loads(vapid.b64url_decode(claims))
    except InvalidSignature:
        raise ValueError("the JWT's signature does not match the k= key") from None
    _check_claims(payload, audience, now)
    return dict(payload)


def _check_claims(claims: object, audience: str, now: float) -> None:
    if not isinstance(claims, dict):
        raise ValueError("the JWT's claims are not a JSON object")
    if claims.get("aud") != audience:
        raise ValueError(f"aud is {claims.get('aud')!r}, not this push service's origin {audience!r}")
    exp = claims.get("exp")
    if not isinstance(exp, int) or not now < exp <= now + 24 * 3600:
        raise ValueError(f"exp {exp!r} is not within the next 24 hours")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise ValueError("sub (the sender's contact) is missing")
