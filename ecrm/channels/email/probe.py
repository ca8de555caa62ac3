"""Check, before a launch sends in its own process, that the SMTP server answers: connect (with
TLS, STARTTLS and login as configured), EHLO, QUIT. Without it, a launch whose server is down
would plan every message and retry them for an hour before giving up."""

from __future__ import annotations

import aiosmtplib

from ecrm.channels.email.smtp import smtp_client
from ecrm.errors import UnreachableError
from ecrm.settings import SmtpSettings

PROBE_TIMEOUT = 5.0


async def check_smtp(config: SmtpSettings) -> None:
    """Raise `UnreachableError` naming host:port and the error if no SMTP session opens (each
    step waits at most `PROBE_TIMEOUT` seconds)."""
    client = smtp_client(config, timeout=min(PROBE_TIMEOUT, config.timeout))
    try:
        await client.connect()
        if client.last_ehlo_response is None:
            await client.ehlo()
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        client.close()
        reason = str(exc) or type(exc).__name__
        raise UnreachableError(f"cannot open an SMTP session with {config.host}:{config.port}: {reason}; nothing "
                               f"was planned or sent (check smtp.host and smtp.port, or ECRM_SMTP__HOST and "
                               f"ECRM_SMTP__PORT)") from exc
