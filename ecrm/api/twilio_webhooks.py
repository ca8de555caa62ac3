"""Twilio's webhooks: `POST /webhooks/twilio/status` (a message's status callbacks) and `POST
/webhooks/twilio/inbound` (a text sent to our number). Public routes, with no API key: each
request must carry `X-Twilio-Signature`, checked with the `twilio` library's RequestValidator
and the auth token against the URL Twilio requested, `public_url` + path + query exactly as
the status callback was given (`render.sms`); missing or wrong -> 403 and nothing changes.

A status callback names its delivery in the query (`?d=ID`, signed with the rest) and its
message in `MessageSid`: it is applied through the state machine only to the delivery sent as
that message, or kept until the send records it (`deliveries.early_receipts`); 204 either way.
An inbound text is answered with TwiML (`text/xml`): the help text for HELP, else empty.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from aiohttp import web
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from ecrm.api.keys import CLOCK, SESSIONS, SETTINGS
from ecrm.api.spec import ErrorOut, operation
from ecrm.deliveries.early_receipts import take_receipt
from ecrm.errors import ApiError
from ecrm.feedback.sms_inbound import Keyword, keyword_of, record_reply, set_sms_consent
from ecrm.feedback.twilio_status import known_status, receipt_for
from ecrm.render.sms import STATUS_PATH
from ecrm.types import ConsentState

logger = logging.getLogger(__name__)
routes = web.RouteTableDef()
INBOUND_PATH = "/webhooks/twilio/inbound"
MAX_FIELDS = 100  # Twilio sends about 20 (inbound MMS: a few per medium)
MAX_ID = 2**63 - 1
MESSAGE_SID = re.compile(r"(SM|MM)[0-9a-fA-F]{32}")
STATUS = re.compile(r"[a-z_]{1,32}")
ERROR_CODE = re.compile(r"[0-9]{1,10}")
ADDRESS = re.compile(r"\+?[0-9A-Za-z]{1,32}")  # E.164, a short code, or an alphanumeric sender
MAX_BODY = 1600  # Twilio's longest message
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response>{}</Response>'


async def signed_form(request: web.Request) -> MultiDict[str]:
    """The request's form parameters, once its Twilio signature checks out."""
    try:
        pairs = parse_qsl((await request.read()).decode("utf-8"), keep_blank_values=True, errors="strict",
                          max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body must be a form (application/x-www-form-urlencoded) of UTF-8 text with at "
                            f"most {MAX_FIELDS} fields") from exc
    form = MultiDict(pairs)
    settings = request.app[SETTINGS]
    token = settings.twilio.auth_token.get_secret_value() if settings.twilio.auth_token else ""
    signature = request.headers.get("X-Twilio-Signature", "")
    url = settings.public_url.rstrip("/") + request.raw_path
    if not token or not signature or not RequestValidator(token).validate(url, form, signature):
        if not token:
            logger.warning("a Twilio webhook was refused: twilio.auth_token is not set (ECRM_TWILIO__AUTH_TOKEN)")
        raise ApiError(403, "the X-Twilio-Signature header is missing or does not match this request")
    return form


def field(form: MultiDict[str], name: str, pattern: re.Pattern[str], required: bool = True) -> str | None:
    value = form.get(name)
    if not value:
        if required:
            raise ApiError(400, f"{name} is required", field=name)
        return None
    if not pattern.fullmatch(value):
        raise ApiError(400, f"{name} is not in Twilio's form", field=name)
    return value


def delivery_id(request: web.Request) -> int:
    value = request.query.get("d", "")
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= MAX_ID:
        raise ApiError(400, "the query's d (the delivery id the status callback was given) is missing or not an id",
                       field="d")
    return int(value)


@routes.post(STATUS_PATH)
@operation("Twilio's message status callback (form-encoded, signed with X-Twilio-Signature)",
           responses={204: None, 400: ErrorOut, 403: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut})
async def twilio_status(request: web.Request) -> web.Response:
    form = await signed_form(request)
    delivery, sid = delivery_id(request), field(form, "MessageSid", MESSAGE_SID) or ""
    status = field(form, "MessageStatus", STATUS) or ""
    receipt = receipt_for(delivery, sid, status, field(form, "ErrorCode", ERROR_CODE, required=False))
    if receipt is not None:
        taken = await take_receipt(request.app[SESSIONS], receipt, request.app[CLOCK].now())
        logger.debug("twilio status %s for delivery %d: %s", status, delivery, taken)
    elif not known_status(status):
        logger.info("twilio status %r is not one ecrm knows; delivery %d is left as it is", status, delivery)
    return web.Response(status=204)


@routes.post(INBOUND_PATH)
@operation("An SMS sent to the shop's number (Twilio, form-encoded, signed); HELP answers TwiML",
           responses={200: None, 204: None, 400: ErrorOut, 403: ErrorOut, 413: ErrorOut, 415: ErrorOut, 422: ErrorOut},
           content_type="text/xml")
async def twilio_inbound(request: web.Request) -> web.Response:
    form = await signed_form(request)
    phone, sid = field(form, "From", ADDRESS) or "", field(form, "MessageSid", MESSAGE_SID) or ""
    body = form.get("Body", "")
    if len(body) > MAX_BODY or "\x00" in body:
        raise ApiError(400, f"Body must be text of at most {MAX_BODY} characters", field="Body")
    keyword, now = keyword_of(body), request.app[CLOCK].now()
    async with request.app[SESSIONS].begin() as session:
        if keyword is Keyword.OPT_OUT or keyword is Keyword.OPT_IN:
            state = ConsentState.WITHDRAWN if keyword is Keyword.OPT_OUT else ConsentState.GRANTED
            await set_sms_consent(session, phone, state, f"twilio:{body.strip().upper()}", now)
        elif keyword is Keyword.NONE:
            await record_reply(session, phone, body, sid, now)
    reply = request.app[SETTINGS].twilio.help_text if keyword is Keyword.HELP else None
    return twiml(reply)


def twiml(message: str | None) -> web.Response:
    content = f"<Message>{escape(message)}</Message>" if message else ""
    return web.Response(text=TWIML.format(content), content_type="text/xml")
