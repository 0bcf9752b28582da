"""Bearer-token authentication for every request (the token is compared in constant time, never logged)."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Awaitable, Callable

from aiohttp import web

from .errors import ApiError, unauthorized

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_response(error: ApiError) -> web.Response:
    return web.Response(status=error.code, text=json.dumps(error.to_status()), content_type="application/json")


def token_middleware(expected_token: str) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    expected = f"Bearer {expected_token}".encode()

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(presented, expected):
            log.info("refused an unauthenticated %s %s", request.method, request.path)
            return status_response(unauthorized())
        return await handler(request)

    return authenticate


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError (and unexpected failures) into Kubernetes Status responses."""
    try:
        return await handler(request)
    except ApiError as error:
        return status_response(error)
    except web.HTTPException:
        raise
    except Exception:  # noqa: BLE001 - a bug must still answer as a Status, and be logged
        log.exception("internal error serving %s %s", request.method, request.path)
        failure = "an error on the server has prevented the request from succeeding"
        return status_response(ApiError(500, "InternalError", failure))
