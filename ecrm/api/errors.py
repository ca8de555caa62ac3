"""The one place where exceptions become HTTP answers, each a JSON object with an `error` sentence.

ApiError carries its own status; a pydantic ValidationError is 422 and lists every bad field
by dotted path; aiohttp's own HTTP errors (404, 405, 413) keep their status; a write that
lost a race on a unique key is 409; a client that hung up mid-request is noted at INFO and
answered 499 (nginx's "client closed request", for the access log and metrics: nobody receives
it); anything else is logged and answered 500.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from ecrm.errors import ApiError
from ecrm.profiles.ingest import input_errors

logger = logging.getLogger(__name__)
CLIENT_CLOSED = 499


def error_response(status: int, message: str, **extra: object) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def invalid_input(exc: ValidationError) -> web.Response:
    fields = [{"field": err.field or "(body)", "message": err.message} for err in input_errors(exc)]
    names = ", ".join(dict.fromkeys(f["field"] for f in fields))
    return error_response(422, f"the request has invalid fields: {names}", fields=fields)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, str(exc), **({"field": exc.field} if exc.field else {}))
    except ValidationError as exc:
        return invalid_input(exc)
    except web.HTTPError as exc:
        response = error_response(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except ConnectionResetError:
        logger.info("client closed the connection during %s %s", request.method, request.path)
        return error_response(CLIENT_CLOSED, "the connection closed before the whole request was received")
    except IntegrityError:
        logger.warning("conflicting write on %s %s", request.method, request.path, exc_info=True)
        return error_response(409, "a concurrent request changed the same record; try again")
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the server log has the details")
