"""Checks for the `push:` settings (ecrm.settings.PushSettings): each key decodes to a P-256 key,
the two halves belong together, and the VAPID `sub` contact is a mailto: or https: URL (RFC 8292
section 2.1). Each raises ValueError with a one-line message the settings error names."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

from ecrm.push import vapid

if TYPE_CHECKING:
    from ecrm.settings import Settings


def push_public_key(value: str) -> str:
    value = value.strip()
    try:
        vapid.public_key_from(value)
    except ValueError as exc:
        raise ValueError(f"the VAPID public key {exc}; run `ecrm push keys` for a new pair") from None
    return value


def push_private_key(value: SecretStr) -> SecretStr:
    text = value.get_secret_value().strip()
    try:
        vapid.private_key_from(text)
    except ValueError as exc:
        raise ValueError(f"the VAPID private key {exc}; run `ecrm push keys` for a new pair") from None
    return SecretStr(text)


def push_subject(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value) if value.isascii() and " " not in value else None
    if parts is not None and parts.scheme == "mailto" and "@" in parts.path.strip("@"):
        return value
    if parts is not None and parts.scheme == "https" and parts.hostname:
        return value
    raise ValueError("expected a mailto: or https: URL push services can reach you at, "
                     "e.g. mailto:ops@shop.example")


def push_pair(public_key: str | None, private_key: SecretStr | None) -> None:
    if public_key and private_key and not vapid.pair_matches(public_key, private_key.get_secret_value()):
        raise ValueError("push.vapid_private_key and push.vapid_public_key are not one key pair; "
                         "set both from the same `ecrm push keys` run")


def push_unready(settings: Settings) -> str | None:
    """Why push messages could not be sent with these settings (None: they can)."""
    push = settings.push
    missing = [name for name, value in (("push.vapid_public_key", push.vapid_public_key),
                                        ("ECRM_PUSH__VAPID_PRIVATE_KEY", push.vapid_private_key),
                                        ("push.subject", push.subject)) if not value]
    if not missing:
        return None
    return (f"web push is not set up: {', '.join(missing)} missing; run `ecrm push keys` and follow what it prints "
            "(README, Web push)")
