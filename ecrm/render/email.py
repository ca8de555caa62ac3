"""Turn a recipient into a wire-ready email: render the locale's template, then fill the
pre-encoded MIME skeleton, and sign it with DKIM when its From domain has a key (`ecrm.dkim`).
Each (template, locale) is compiled once per composer; the headers that are the same for the
whole send (List-Id, Feedback-ID, Precedence: `bulk_headers`) are encoded once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.dkim.signer import signer_for
from ecrm.feedback.unsubscribe import TokenSigner
from ecrm.messages import OutgoingEmail
from ecrm.render.addresses import wire_address
from ecrm.render.bulk_headers import PRECEDENCE, feedback_id, list_id
from ecrm.render.composer import VALIDATION_STREAM
from ecrm.render.environment import CompiledEmail, TemplateCatalog
from ecrm.render.message_id import MessageIds
from ecrm.render.mime import EmailHeaders, MimeSkeleton
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings
from ecrm.site.identity import SiteLink
from ecrm.types import ChannelKind


@dataclass(slots=True)  # not frozen: built per message, and frozen triples the cost
class RenderedEmail:
    subject: str
    text: str
    html: str
    unsubscribe_url: str


@dataclass(frozen=True, slots=True)
class LocaleVariant:
    """What a composer keeps per recipient locale: the compiled template, its MIME skeleton and
    the part of the render context that is the same for every recipient in that locale."""

    compiled: CompiledEmail
    skeleton: MimeSkeleton
    context: dict[str, Any]


class EmailComposer:
    """Composes one campaign's emails; keep one per run and reuse it for every batch."""

    kind = ChannelKind.EMAIL

    def __init__(self, settings: Settings, catalog: TemplateCatalog, template: str, campaign: str,
                 clock: Clock = SYSTEM_CLOCK, stream: str = VALIDATION_STREAM) -> None:
        self.catalog, self.template, self.campaign, self.clock = catalog, template, campaign, clock
        self.from_name = settings.email.from_name
        self.from_address, self._from_utf8 = wire_address(settings.email.from_address)
        email, (run, _, source) = settings.email, stream.partition(":")
        self.bulk_headers = (list_id(campaign, email.list_id_domain or email.message_id_domain)
                             + feedback_id(campaign, run, source, email.feedback_sender_id) + PRECEDENCE)
        self._dkim = signer_for(settings.dkim, self.from_address)
        # A signed body must reach the verifier byte for byte: a hop without 8BITMIME would
        # re-encode an 8bit one, so signed emails go 7bit (RFC 6376 5.3).
        self.eight_bit = settings.email.eight_bit and self._dkim is None
        self.unsubscribe_base = settings.public_url.rstrip("/") + "/u/"
        self.mailto = f", <mailto:{settings.email.unsubscribe_mailto}?subject=unsubscribe>" \
            if settings.email.unsubscribe_mailto else ""
        self._signer = TokenSigner(settings.secret_key)
        self._secret = settings.secret_key
        self.message_ids = MessageIds(settings.secret_key, settings.email.message_id_domain)
        self._variants: dict[str, LocaleVariant] = {}

    def render(self, recipient: Recipient) -> RenderedEmail:
        return self._render(recipient, self.variant(recipient.locale))

    def compose(self, recipient: Recipient) -> OutgoingEmail:
        if not recipient.email:
            raise ValueError(f"profile {recipient.external_id} has no email address")
        to, to_utf8 = wire_address(recipient.email)
        variant = self.variant(recipient.locale)
        rendered = self._render(recipient, variant)
        message_id = self.message_ids.make(recipient.delivery_id)
        unsubscribe = f"<{rendered.unsubscribe_url}>{self.mailto}"
        headers = EmailHeaders(to, rendered.subject, message_id, unsubscribe)
        data, eight_bit = variant.skeleton.build(headers, rendered.text, rendered.html)
        if self._dkim is not None:
            data = self._dkim.sign(data)
        return OutgoingEmail(self.from_address, to, data, message_id, eight_bit, to_utf8 or self._from_utf8)

    def _render(self, recipient: Recipient, variant: LocaleVariant) -> RenderedEmail:
        url = self.unsubscribe_base + self._signer.sign(recipient.delivery_id, recipient.profile_id)
        ctx = {**variant.context, "profile": recipient.profile_fields(), "traits": recipient.traits,
               "data": recipient.data or {}, "locale": recipient.locale, "unsubscribe_url": url,
               "site_link": SiteLink(self._secret, recipient.profile_id)}  # shop links naming the clicker (ecrm.site)
        compiled = variant.compiled
        subject = compiled.subject_part.render(ctx).strip()
        html = compiled.html_part.render(ctx)
        return RenderedEmail(subject, compiled.text_part.render(ctx), html, url)

    def variant(self, locale: str) -> LocaleVariant:
        return self._variants.get(locale) or self._add_variant(locale)

    def _add_variant(self, locale: str) -> LocaleVariant:
        compiled = self.catalog.email(self.template, locale)
        context = self.catalog.context({"campaign": self.campaign, **compiled.locale_values})
        skeleton = MimeSkeleton(self.from_name, self.from_address, compiled.lang, self.eight_bit, self.clock,
                                self.bulk_headers)
        variant = self._variants[locale] = LocaleVariant(compiled, skeleton, context)
        return variant
