"""Errors for failed Kubernetes API calls, and the mapping from HTTP status / Status objects to them.

Every message names the verb, the resource (``rayjobs.ray.io``) and the namespace. No message ever
contains a credential: the request's headers are never formatted, and server text is passed through
``redact`` in case a proxy echoes one back.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kuberay_provider.core.errors import FieldError, KubeRayProviderError, ValidationError
from kuberay_provider.core.kube.api_requests import Target

_SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    re.compile(r"(?i)(basic\s+)[^\s\"',;]+"),
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?!bearer|basic)[^\s\"',;]+"),
    re.compile(r"(?i)((?:access_|id_|refresh_)?token[\"']?\s*[:=]\s*[\"']?)[^\s\"',;]+"),
)


def redact(text: str) -> str:
    """``text`` with anything shaped like a credential replaced by ``<redacted>``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(r"\1<redacted>", text)
    return text


class KubeApiError(KubeRayProviderError):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, message: str, *, target: Target, status: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.target = target
        self.status = status
        self.reason = reason


class NotFoundError(KubeApiError):
    """The object (or the resource type itself, when its CRD is not installed) does not exist."""


class AlreadyExistsError(KubeApiError):
    """An object with this name already exists."""


class ConflictError(KubeApiError):
    """The write was based on a stale resourceVersion; re-read the object and try again."""


class UnauthorizedError(KubeApiError):
    """The API server did not accept the credentials at all (HTTP 401)."""


class ForbiddenError(KubeApiError):
    """The credentials are valid but lack RBAC permission for the verb (HTTP 403)."""


class BadRequestError(KubeApiError):
    """The API server could not process the request as sent (HTTP 400)."""


class ResourceExpiredError(KubeApiError):
    """HTTP 410 Gone: a resourceVersion is older than the server's history (watches relist on this)."""


class InvalidError(KubeApiError, ValidationError):
    """HTTP 422: the server's validation rejected the object; ``errors`` lists each field's problem."""

    def __init__(self, errors: list[FieldError], *, target: Target, message: str = "") -> None:
        ValidationError.__init__(self, errors, object_name=f"{target.subject} {target.where}")
        self.target = target
        self.status = 422
        self.reason = "Invalid"
        self.server_message = message


class ApiUnavailableError(KubeApiError):
    """The API server could not be reached or kept failing after every retry."""

    def __init__(self, message: str, *, target: Target, attempts: int, status: int | None = None) -> None:
        super().__init__(message, target=target, status=status)
        self.attempts = attempts


class CreateOutcomeUnknownError(ApiUnavailableError):
    """A create with ``generateName`` failed after it may have reached the server; it is never retried
    because a retry could create a second object."""


def parse_status(body: Any) -> dict[str, Any] | None:
    """The Kubernetes ``Status`` object in a response body, or None when the body is not one."""
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if isinstance(body, dict) and body.get("kind") == "Status":
        return body
    return None


def field_errors(status: dict[str, Any]) -> list[FieldError]:
    """One FieldError per ``details.causes`` entry (field → path, reason → ``server:<reason>``)."""
    causes = (status.get("details") or {}).get("causes") or []
    errors = [
        FieldError(
            path=str(cause.get("field") or "<object>"),
            rule=f"server:{cause.get('reason') or 'Invalid'}",
            message=redact(str(cause.get("message") or "")),
        )
        for cause in causes
        if isinstance(cause, dict)
    ]
    if not errors:
        errors.append(FieldError("<object>", "server:Invalid", redact(str(status.get("message") or "invalid"))))
    return errors


def missing_permission(target: Target) -> str:
    """The RBAC rule a 403 asks for, ready to paste into a Role (a ClusterRole for cluster-scoped targets)."""
    plural, _, group = target.resource.partition(".")
    plural, _, subresource = plural.partition("/")
    resource = f"{plural}/{subresource}" if subresource else plural
    holder = "a Role in that namespace" if target.namespace else "a ClusterRole"
    rule = f'{{apiGroups: ["{group}"], resources: ["{resource}"], verbs: ["{target.verb}"]}}'
    return (
        f"missing RBAC permission: verb '{target.verb}' on resource '{resource}' in API group '{group}'; add the rule "
        f"{rule} to {holder} bound to these credentials (docker/kubernetes/rbac.yaml lists every rule the provider uses)"
    )


def error_from_response(status_code: int | None, reason: str, body: Any, target: Target) -> KubeApiError:
    """The provider error for an HTTP error response (or a watch ERROR event's Status)."""
    status = parse_status(body)
    server_message = redact(str((status or {}).get("message") or reason or "no message"))
    status_reason = str((status or {}).get("reason") or reason or "")
    said = f" (server said: {server_message})"
    kwargs: dict[str, Any] = {"target": target, "status": status_code, "reason": status_reason}
    verb, resource, where = target.verb, target.resource, target.where
    if status_code == 401:
        return UnauthorizedError(
            f"the API server rejected the credentials in use (401 Unauthorized) while trying to {verb} "
            f"{resource} {where}: the token or client certificate is missing, invalid or expired{said}",
            **kwargs,
        )
    if status_code == 403:
        return ForbiddenError(
            f"the credentials in use may not {verb} {resource} {where}: {missing_permission(target)}{said}", **kwargs
        )
    if status_code == 404:
        if status is None:
            # A plain-text 404 comes from the router, not the resource: the type itself is not served.
            return NotFoundError(
                f"the API server does not serve {resource}; is its CustomResourceDefinition installed?", **kwargs
            )
        return NotFoundError(f"{target.subject} was not found {where}", **kwargs)
    if status_code == 409:
        if status_reason == "AlreadyExists":
            return AlreadyExistsError(f"{target.subject} already exists {where}", **kwargs)
        return ConflictError(
            f"could not {verb} {target.subject} {where}: it was changed since it was read (stale "
            f"resourceVersion); read it again and retry{said}",
            **kwargs,
        )
    if status_code == 410:
        return ResourceExpiredError(
            f"could not {verb} {resource} {where}: the resourceVersion is too old (410 Gone){said}", **kwargs
        )
    if status_code == 422:
        return InvalidError(field_errors(status or {}), target=target, message=server_message)
    if status_code == 400:
        return BadRequestError(
            f"the API server rejected the request to {verb} {target.subject} {where}{said}", **kwargs
        )
    return KubeApiError(
        f"could not {verb} {target.subject} {where}: HTTP {status_code} {status_reason}{said}", **kwargs
    )


def describe_failure(exc: BaseException) -> str:
    """A short, credential-free description of a low-level failure for an error message."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".rstrip()
    text = redact(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
