"""Authentication and authorization of every request (tokens are compared as digests or in constant time,
never logged); the rules themselves are in rbac.py."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .errors import ApiError, unauthorized
from .handlers import parse_route
from .rbac import ADMIN, Attributes, Authorizer, Tokens, User, forbidden, request_verb
from .resources import Cluster

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_response(error: ApiError) -> web.Response:
    return web.Response(status=error.code, text=json.dumps(error.to_status()), content_type="application/json")


USER_KEY = web.RequestKey("kuberay_local_user", User)


def user_of(request: web.Request) -> User:
    """The authenticated user of a request (the admin when authentication is not installed)."""
    user: User = request.get(USER_KEY, ADMIN)  # Request.get is untyped; USER_KEY holds a User
    return user


def authentication_middleware(
    tokens: Tokens, cluster: Cluster
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = tokens.authenticate(request.headers.get("Authorization", ""), cluster)
        if user is None:
            log.info("refused an unauthenticated %s %s", request.method, request.path)
            return status_response(unauthorized())
        request[USER_KEY] = user
        return await handler(request)

    return authenticate


def request_attributes(cluster: Cluster, request: web.Request) -> Attributes | None:
    """RBAC's view of a request; None for a path naming no known resource (answered 404 by the router)."""
    path = request.path
    non_resource = Attributes(verb=request.method.lower().replace("head", "get"), path=path, resource_request=False)
    if not (path.startswith("/api/") or path.startswith("/apis/")):
        return non_resource
    try:
        route = parse_route(cluster, request.rel_url.raw_path)
    except ApiError:
        return None
    if route is None:
        return non_resource
    verb = request_verb(
        request.method,
        named=bool(route.name),
        watch=request.query.get("watch", "").lower() in ("true", "1"),
        subresource=route.subresource,
    )
    return Attributes(
        verb, path, True, route.rtype.group, route.rtype.plural, route.subresource, route.namespace, route.name
    )


def authorization_middleware(authorizer: Authorizer) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        user = user_of(request)
        attributes = None if user.admin else request_attributes(authorizer.cluster, request)
        if attributes is not None and not authorizer.allows(user, attributes):
            log.info("forbade %s to %s %s", user.name, attributes.verb, attributes.resource_path or attributes.path)
            return status_response(forbidden(user, attributes))
        return await handler(request)

    return authorize


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError (and unexpected failures) into Kubernetes Status responses."""
    try:
        return await handler(request)
    except ApiError as error:
        return status_response(error)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("internal error serving %s %s", request.method, request.path)
        failure = "an error on the server has prevented the request from succeeding"
        return status_response(ApiError(500, "InternalError", failure))
