"""Which composer and which adapters serve each channel kind: one `Pairing` per kind, one line
per provider.

A pairing ties a kind's composer to its providers through one message type `M`, so mypy
refuses a composer whose messages a provider cannot send. Adding a provider is one module
plus one line in its kind's `providers`; adding a kind is a message type (`ecrm.messages`),
a composer (`ecrm.render`), an adapter and one `Pairing` in `PAIRINGS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ecrm.channels.base import Channel
from ecrm.channels.email.smtp import SmtpEmail
from ecrm.channels.push.webpush import WebPush
from ecrm.channels.sms.twilio import TwilioSms
from ecrm.messages import OutgoingEmail, OutgoingPush, OutgoingSms
from ecrm.push.gone import delete_gone
from ecrm.push.settings_checks import push_unready
from ecrm.render.composer import ComposerFactory
from ecrm.render.email import EmailComposer
from ecrm.render.environment import EMAIL_PARTS, PUSH_PART, SMS_PART
from ecrm.render.push import PushComposer
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
    parts: tuple[str, ...] = ()  # the files a template folder needs for this kind (checked by validation)
    unready: Callable[[Settings], str | None] | None = None  # why settings cannot send this kind (validation)
    # what the send does with a chunk's messages once recorded (push: delete the gone subscriptions)
    after_send: Callable[[async_sessionmaker[AsyncSession], Sequence[M | None]], Awaitable[object]] | None = None
    callbacks: bool = False  # its providers report on messages by callback, which may come before the send records them


EMAIL = Pairing[OutgoingEmail](ChannelKind.EMAIL, EmailComposer, {"smtp": SmtpEmail.from_settings}, default="smtp",
                                parts=EMAIL_PARTS)
SMS = Pairing[OutgoingSms](ChannelKind.SMS, SmsComposer, {"twilio": TwilioSms.from_settings}, default="twilio",
                            parts=(SMS_PART,), callbacks=True)
PUSH = Pairing[OutgoingPush](ChannelKind.PUSH, PushComposer, {"webpush": WebPush.from_settings}, default="webpush",
                              parts=(PUSH_PART,), after_send=delete_gone, unready=push_unready)

PAIRINGS: dict[ChannelKind, Pairing[Any]] = {pairing.kind: pairing for pairing in (EMAIL, SMS, PUSH)}


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
