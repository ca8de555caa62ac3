"""The composer seam: what turns a recipient into a channel's message.

A composer is built once per send (its template and label) and reused for every batch; it
compiles each locale's template on first use. `compose` raises `TemplateError` or
`ValueError` when a recipient cannot get this message (a template that does not render for
them, no address on the channel); the send records that as a technical failure.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from ecrm.clock import Clock
from ecrm.render.environment import TemplateCatalog
from ecrm.render.recipient import Recipient
from ecrm.settings import Settings

M_co = TypeVar("M_co", covariant=True)


class Composer(Protocol[M_co]):
    def compose(self, recipient: Recipient) -> M_co: ...


# How a channel kind builds its composer: settings, templates, the template's name, the label
# templates see as `campaign` (a campaign's name, a transactional template's name), and the
# clock that dates its messages.
ComposerFactory = Callable[[Settings, TemplateCatalog, str, str, Clock], Composer[M_co]]
