"""Turn a recipient into a web push notification: render the locale's `push.json`
(`render.push_template`) into the JSON payload the service worker receives, for every
subscription the recipient has (`Recipient.push`, read with the batch).

The payload is `{title, body, icon?, url?, lang, report}`; `report` is this delivery's click
link (`/push/clicks/{token}`, the token signed like an unsubscribe token but with a key of its
own), which the service worker posts to when the notification is clicked (`api.push_public`).
A payload over `encryption.MAX_PAYLOAD` bytes (4,096 once encrypted) is refused as a template
error, so a campaign whose sample is too long fails validation.
"""

from __future__ import annotations

import orjson

from ecrm.clock import SYSTEM_CLOCK, Clock
from ecrm.errors import TemplateError
from ecrm.feedback.unsubscribe import TokenSigner
from ecrm.messages import OutgoingPush
from ecrm.push.encryption import MAX_PAYLOAD
from ecrm.render.composer import VALIDATION_STREAM
from ecrm.render.environment import TemplateCatalog
from ecrm.render.push_template import PreparedPush, compile_push
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings
from ecrm.types import ChannelKind

CLICK_PATH = "/push/clicks/"
FIXED = ("campaign", "lang", "locale")  # the names that are the same for a send's recipients of one locale


def click_signer(secret_key: str) -> TokenSigner:
    """The signer of click tokens: a key derived for clicks, so a click token is never an
    unsubscribe token."""
    return TokenSigner(secret_key + ":push-click")


class PushComposer:
    """Composes one send's notifications; keep one per send and reuse it for every batch."""

    kind = ChannelKind.PUSH

    def __init__(self, settings: Settings, catalog: TemplateCatalog, template: str, campaign: str,
                 clock: Clock = SYSTEM_CLOCK, stream: str = VALIDATION_STREAM) -> None:
        self.catalog, self.template, self.campaign = catalog, template, campaign
        self.ttl, self.urgency = settings.push.ttl, settings.push.urgency
        self.click_base = settings.public_url.rstrip("/") + CLICK_PATH
        self._signer = click_signer(settings.secret_key)
        self._variants: dict[str, PreparedPush] = {}

    def compose(self, recipient: Recipient) -> OutgoingPush:
        if not recipient.push:
            raise ValueError(f"profile {recipient.external_id} has no push subscription")
        prepared = self.variant(recipient.locale)
        compiled = prepared.compiled
        fields = prepared.render({**prepared.context, "profile": recipient.profile_fields(),
                                  "traits": recipient.traits})
        topic = fields.pop("topic", None)
        report = self.click_base + self._signer.sign(recipient.delivery_id, recipient.profile_id)
        payload = orjson.dumps({**fields, "lang": compiled.lang, "report": report})
        if len(payload) > MAX_PAYLOAD:
            raise TemplateError(compiled.path, f"the notification is {len(payload)} bytes of JSON; push services "
                                f"take {MAX_PAYLOAD} at most (4,096 once encrypted): shorten title or body")
        return OutgoingPush(recipient.push, payload, self.ttl, compiled.urgency or self.urgency, topic)

    def variant(self, locale: str) -> PreparedPush:
        found = self._variants.get(locale)
        if found is None:
            compiled = compile_push(self.catalog, self.template, locale)
            context = self.catalog.context({"campaign": self.campaign, "lang": compiled.lang, "locale": locale})
            found = self._variants[locale] = compiled.prepare(context, FIXED)
        return found
