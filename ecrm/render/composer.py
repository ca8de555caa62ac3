"""The composer seam: what turns a recipient into a channel's message.

A composer is built once per send (its template and label) and reused for every batch; it
compiles each locale's template on first use. `compose` raises `TemplateError` or
`ValueError` when a recipient cannot get this message (a template that does not render for
them, no address on the channel); the send records that as a technical failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from ecrm.clock import Clock
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings

M_co = TypeVar("M_co", covariant=True)


class Composer(Protocol[M_co]):
    def compose(self, recipient: Recipient) -> M_co: ...


# How a channel kind builds its composer: settings, templates, the template's name, the label
# templates see as `campaign` (a campaign's name, a transactional template's name), the clock
# that dates its messages, and the send's `stream` (`send_stream`: its source's id and kind,
# which an email's Feedback-ID names).
ComposerFactory = Callable[[Settings, TemplateCatalog, str, str, Clock, str], Composer[M_co]]


class WithData(Generic[M_co]):
    """A composer whose recipients carry the send's `data` (a transactional message's extra
    values), which templates read as `data.<name>`."""

    def __init__(self, composer: Composer[M_co], data: dict[str, Any]) -> None:
        self.composer, self.data = composer, data

    def compose(self, recipient: Recipient) -> M_co:
        recipient.data = self.data
        return self.composer.compose(recipient)


def send_stream(source_kind: str, source_id: int) -> str:
    """`{source_id}:{source kind}`: the run and kind of mail a send belongs to."""
    return f"{source_id}:{source_kind}"


VALIDATION_STREAM = send_stream("validation", 0)  # a composer that only checks templates
