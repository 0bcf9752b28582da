"""User impersonation (``kubectl --as`` / ``--as-group``), as kube-apiserver's impersonation filter does it.

Without it the headers would be ignored and ``kubectl auth can-i --as=system:serviceaccount:ns:sa`` with the
plane's admin kubeconfig would answer as the admin: "yes" to everything. The requester must be allowed the
``impersonate`` verb on each ``users``, ``serviceaccounts`` (by namespace and name) or ``groups`` it names,
by the same RBAC as any request (the admin token always is); the request then runs as that user.
``Impersonate-Uid`` and ``Impersonate-Extra-*`` are refused rather than ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from .auth import USER_KEY, Handler, user_of
from .errors import ApiError, bad_request
from .rbac import SERVICE_ACCOUNT_PREFIX, Attributes, Authorizer, User, forbidden

log = logging.getLogger(__name__)
USER_HEADER = "Impersonate-User"
GROUP_HEADER = "Impersonate-Group"
UNSUPPORTED_HEADERS = ("impersonate-uid", "impersonate-extra-")
AUTHENTICATED, UNAUTHENTICATED, MASTERS = "system:authenticated", "system:unauthenticated", "system:masters"


def _service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of ``system:serviceaccount:<namespace>:<name>``, else None (a plain user name)."""
    if not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return None
    parts = username[len(SERVICE_ACCOUNT_PREFIX) :].split(":")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


def _acting_as(resource: str, name: str, namespace: str = "") -> Attributes:
    return Attributes("impersonate", "", True, "", resource, "", namespace, name)


def impersonated(requester: User, username: str, groups: list[str], authorizer: Authorizer) -> User:
    """The user to act as; raises the 403 kube-apiserver sends for the first impersonation not allowed."""
    account = _service_account(username)
    checks = [_acting_as("serviceaccounts", account[1], account[0]) if account else _acting_as("users", username)]
    checks += [_acting_as("groups", group) for group in groups]
    for attributes in checks:
        if not authorizer.allows(requester, attributes):
            log.info("refused %s impersonating %s", requester.name, attributes.name)
            raise forbidden(requester, attributes)
    if account and not groups:
        groups = ["system:serviceaccounts", f"system:serviceaccounts:{account[0]}"]
    if not {AUTHENTICATED, UNAUTHENTICATED} & set(groups):
        groups = [*groups, AUTHENTICATED]
    return User(username, tuple(groups), admin=MASTERS in groups)


def impersonation_middleware(authorizer: Authorizer) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """Runs after authentication, before authorization (which then judges the impersonated user)."""

    @web.middleware
    async def impersonate(request: web.Request, handler: Handler) -> web.StreamResponse:
        usernames, groups = request.headers.getall(USER_HEADER, []), request.headers.getall(GROUP_HEADER, [])
        unsupported = [h for h in request.headers if h.lower().startswith(UNSUPPORTED_HEADERS)]
        if not (usernames or groups or unsupported):
            return await handler(request)
        if unsupported:
            raise bad_request(
                f"the local control plane does not support impersonation by {', '.join(sorted(set(unsupported)))}"
            )
        if len(usernames) != 1 or not usernames[0]:
            raise ApiError(
                500,
                "InternalError",
                "Internal error occurred: requested impersonation without impersonating exactly one user",
            )
        request[USER_KEY] = impersonated(user_of(request), usernames[0], groups, authorizer)
        return await handler(request)

    return impersonate
