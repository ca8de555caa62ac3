"""Signing an email with its From domain's DKIM key (dkimpy), when `dkim:` has one.

The signature covers the headers a mailbox provider checks (From, To, Subject, Date,
Message-ID, the MIME headers) and those that must not be added or changed on the way:
List-Id, List-Unsubscribe and List-Unsubscribe-Post (Gmail and Yahoo want one-click
unsubscribe signed, RFC 8058 4), Feedback-ID (Gmail ignores an unsigned one) and Precedence.
Canonicalization is relaxed/relaxed, which survives a relay re-folding headers.

Signing costs CPU on the send path (about a millisecond for RSA-2048, much less for
Ed25519: `python -m bench.compose --dkim`); README's "Bulk-sender headers and DKIM" says
when to sign here and when at the relay.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from ecrm.errors import ConfigError
from ecrm.render.addresses import AddressError, idna_domain
from ecrm.settings import DkimSettings

SIGNED_HEADERS = (
    b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type", b"content-language",
    b"list-id", b"list-unsubscribe", b"list-unsubscribe-post", b"feedback-id", b"precedence",
)
_CANONICALIZE = (b"relaxed", b"relaxed")
_PROBE = b"From: a@b\r\nTo: c@d\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimSigner:
    """Signs emails from one domain with one key; `sign` returns the email with its
    DKIM-Signature header first."""

    def __init__(self, domain: str, selector: str, algorithm: str, private_key: bytes) -> None:
        self._dkim = _dkimpy()
        self.domain, self.selector, self.algorithm = domain.encode(), selector.encode(), algorithm.encode()
        self._key = private_key
        self.sign(_PROBE)  # a key that does not parse fails here, at start, not per message

    def sign(self, data: bytes) -> bytes:
        header: bytes = self._dkim.sign(data, self.selector, self.domain, self._key,
                                        signature_algorithm=self.algorithm, canonicalize=_CANONICALIZE,
                                        include_headers=list(SIGNED_HEADERS))
        return header + data


def signer_for(keys: Mapping[str, DkimSettings], from_address: str) -> DkimSigner | None:
    """The signer for `from_address`'s domain, None when `dkim:` has no key for it; ConfigError
    naming the key when it cannot be read or used."""
    if not keys:
        return None
    domain = from_address.rpartition("@")[2].lower()
    for name, settings in keys.items():
        if _normal(name) == domain:
            return _signer(domain, settings, f"dkim.{name}")
    return None


def _normal(domain: str) -> str:
    try:
        return idna_domain(domain.strip().rstrip(".").lower())
    except AddressError:
        return domain


@lru_cache(maxsize=32)
def _signer(domain: str, settings: DkimSettings, key_name: str) -> DkimSigner:
    """One signer per domain and key for the process: the key file is read once."""
    key = _private_key(settings, key_name)
    try:
        return DkimSigner(domain, settings.selector, settings.algorithm, key)
    except Exception as exc:  # dkimpy raises its own errors and nacl's, ValueError, IndexError
        raise ConfigError(key_name, "config", f"the {settings.algorithm} private key cannot sign ({exc}); "
                          f"make one with `ecrm dkim keygen {domain} {settings.selector}`") from exc


def _private_key(settings: DkimSettings, key_name: str) -> bytes:
    if settings.private_key is not None:
        return settings.private_key.get_secret_value().strip().encode()
    path = Path(settings.key_file or "")
    try:
        return path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"{key_name}.key_file", "config", f"cannot read {path}: {exc.strerror}") from exc


def _dkimpy() -> Any:
    try:
        import dkim  # optional: only a sender that signs needs it
    except ImportError as exc:
        raise ConfigError("dkim", "config", "DKIM signing needs dkimpy: pip install 'ecrm[dkim]'") from exc
    return dkim
