"""Turn a recipient into an SMS: render the locale's `sms.txt` (the same folder fallback as an
email's parts, `TemplateCatalog.sms`) and count the parts it goes out in (`channels.sms.parts`),
which the send stores on the delivery. The status callback names the delivery, so a provider's
report finds its row by primary key instead of by an index on the message id that every send
would have to write (`deliveries.models`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecrm.channels.sms.parts import count
from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.errors import SmsTextError
from ecrm.messages import OutgoingSms
from ecrm.render.composer import VALIDATION_STREAM
from ecrm.render.environment import CompiledSms, TemplateCatalog
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings
from ecrm.types import ChannelKind

STATUS_PATH = "/webhooks/twilio/status"


def status_callback_base(public_url: str) -> str:
    """The status callback URL without its query: what Twilio is told, less the delivery."""
    return public_url.rstrip("/") + STATUS_PATH + "?d="


@dataclass(frozen=True, slots=True)
class SmsVariant:
    compiled: CompiledSms
    context: dict[str, Any]


class SmsComposer:
    """Composes one send's text messages; keep one per send and reuse it for every batch."""

    kind = ChannelKind.SMS

    def __init__(self, settings: Settings, catalog: TemplateCatalog, template: str, campaign: str,
                 clock: Clock = SYSTEM_CLOCK, stream: str = VALIDATION_STREAM) -> None:
        self.catalog, self.template, self.campaign, self.clock = catalog, template, campaign, clock
        self.callback_base = status_callback_base(settings.public_url)
        self._variants: dict[str, SmsVariant] = {}

    def render(self, recipient: Recipient) -> str:
        variant = self.variant(recipient.locale)
        ctx = {**variant.context, "profile": recipient.profile_fields(), "traits": recipient.traits,
               "locale": recipient.locale}
        return variant.compiled.text_part.render(ctx).strip()

    def compose(self, recipient: Recipient) -> OutgoingSms:
        if not recipient.phone:
            raise ValueError(f"profile {recipient.external_id} has no phone number")
        body = self.render(recipient)
        if not body:
            raise ValueError(f"the text of template {self.template} is empty for profile {recipient.external_id}")
        try:
            parts = count(body).parts
        except SmsTextError as exc:
            raise ValueError(str(exc)) from exc
        return OutgoingSms(recipient.phone, body, parts, f"{self.callback_base}{recipient.delivery_id}")

    def variant(self, locale: str) -> SmsVariant:
        found = self._variants.get(locale)
        if found is None:
            compiled = self.catalog.sms(self.template, locale)
            context = self.catalog.context({"campaign": self.campaign, "lang": locale.replace("_", "-")})
            found = self._variants[locale] = SmsVariant(compiled, context)
        return found
