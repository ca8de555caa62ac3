"""Which composer and which adapters serve each channel kind: one `Pairing` per kind, one line
per provider.

A pairing ties a kind's composer to its providers through one message type `M`, so mypy
refuses a composer whose messages a provider cannot send. Adding a provider is one module
plus one line in its kind's `providers`; adding a kind is a message type (`ecrm.messages`),
a composer (`ecrm.render`), an adapter and one `Pairing` in `PAIRINGS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from ecrm.channels.base import Channel
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.channels.sms.twilio import TwilioSms
from ecrm.messages import OutgoingEmail, OutgoingSms
from ecrm.render.composer import ComposerFactory
from ecrm.render.email import EmailComposer
from ecrm.render.sms import SmsComposer
from ecrm.settings import Settings
from ecrm.types import ChannelKind

M = TypeVar("M")


@dataclass(frozen=True)
class Pairing(Generic[M]):
    kind: ChannelKind
    composer: ComposerFactory[M]
    providers: Mapping[str, Callable[[Settings], Channel[M]]]
    default: str  # the provider used when nothing names one
    callbacks: bool = False  # its providers report on messages by callback, which may come before the send records them


EMAIL = Pairing[OutgoingEmail](ChannelKind.EMAIL, EmailComposer, {"smtp": SmtpEmail.from_settings}, default="smtp")
SMS = Pairing[OutgoingSms](ChannelKind.SMS, SmsComposer, {"twilio": TwilioSms.from_settings}, default="twilio",
                              callbacks=True)

PAIRINGS: dict[ChannelKind, Pairing[Any]] = {pairing.kind: pairing for pairing in (EMAIL, SMS)}


class Channels:
    """The live adapters of one process, opened on first use and closed together."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._live: dict[str, Channel[Any]] = {}

    def open(self, pairing: Pairing[M], provider: str | None = None) -> Channel[M]:
        name = provider or pairing.default
        channel = self._live.get(name)
        if channel is None:
            channel = self._live[name] = pairing.providers[name](self.settings)
        return cast(Channel[M], channel)

    async def close(self) -> None:
        live, self._live = list(self._live.values()), {}
        for channel in live:
            await channel.close()
