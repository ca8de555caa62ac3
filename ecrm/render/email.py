"""Turn a recipient into a wire-ready email: render the locale's template, then fill the
pre-encoded MIME skeleton. Each (template, locale) is compiled once per composer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecrm.channels.base import OutgoingEmail
from ecrm.feedback.unsubscribe import TokenSigner
from ecrm.render.environment import CompiledEmail, TemplateCatalog
from ecrm.render.message_id import MessageIds
from ecrm.render.mime import EmailHeaders, MimeSkeleton
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings
from ecrm.types import ChannelKind


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class RenderedEmail:
    subject: str
    text: str
    html: str


class EmailComposer:
    """Composes one campaign's emails; keep one per run and reuse it for every batch."""

    kind = ChannelKind.EMAIL

    def __init__(self, settings: Settings, catalog: TemplateCatalog, template: str, campaign: str) -> None:
        self.catalog, self.template, self.campaign = catalog, template, campaign
        self.from_name, self.from_address = settings.email.from_name, settings.email.from_address
        self.unsubscribe_base = settings.public_url.rstrip("/") + "/u/"
        self.mailto = f", <mailto:{settings.email.unsubscribe_mailto}?subject=unsubscribe>" \
            if settings.email.unsubscribe_mailto else ""
        self._signer = TokenSigner(settings.secret_key)
        self.message_ids = MessageIds(settings.secret_key, settings.email.message_id_domain)
        self._skeletons: dict[str, MimeSkeleton] = {}

    def context(self, recipient: Recipient, compiled: CompiledEmail, unsubscribe_url: str) -> dict[str, Any]:
        return self.catalog.context({
            "profile": recipient.profile_fields(), "traits": recipient.traits, "campaign": self.campaign,
            "locale": recipient.locale, "lang": compiled.lang, "dir": compiled.direction,
            "unsubscribe_url": unsubscribe_url,
        })

    def render(self, recipient: Recipient) -> tuple[CompiledEmail, RenderedEmail, str]:
        compiled = self.catalog.email(self.template, recipient.locale)
        url = self.unsubscribe_base + self._signer.sign(recipient.delivery_id, recipient.profile_id)
        ctx = self.context(recipient, compiled, url)
        subject = compiled.subject_part.render(ctx).strip()
        html = compiled.html_part.render(ctx)
        return compiled, RenderedEmail(subject, compiled.text_part.render(ctx), html), url

    def compose(self, recipient: Recipient) -> OutgoingEmail:
        if not recipient.email:
            raise ValueError(f"profile {recipient.external_id} has no email address")
        compiled, rendered, url = self.render(recipient)
        message_id = self.message_ids.make(recipient.delivery_id)
        headers = EmailHeaders(recipient.email, rendered.subject, message_id, f"<{url}>{self.mailto}")
        data = self._skeleton(compiled).build(headers, rendered.text, rendered.html)
        return OutgoingEmail(self.from_address, recipient.email, data, message_id)

    def _skeleton(self, compiled: CompiledEmail) -> MimeSkeleton:
        key = f"{compiled.folder}:{compiled.lang}"
        skeleton = self._skeletons.get(key)
        if skeleton is None:
            skeleton = self._skeletons[key] = MimeSkeleton(self.from_name, self.from_address, compiled.lang)
        return skeleton
