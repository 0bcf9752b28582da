"""When and how long to retry Kubernetes API calls; shared by the sync and the async client.

Retried: HTTP 429, 500, 502, 503, 504 and connection failures. Never retried: any other 4xx, TLS
failures. ``Retry-After`` (seconds or an HTTP date) wins over the exponential backoff with jitter.

Creates are retried too, which can be ambiguous: a connection reset (or a 500/502/504) after the
request was sent may mean the object *was* created. ``CallGuard`` records that; for a create with an
explicit name the client then treats a later 409 AlreadyExists as "our first attempt landed" and
returns the existing object. With ``generateName`` a retry could create a second object, so an
ambiguous failure is raised as ``CreateOutcomeUnknownError`` instead of retried.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import tenacity

from kuberay_provider.core.kube.api_requests import Target
from kuberay_provider.core.kube.errors import (
    ApiUnavailableError,
    CreateOutcomeUnknownError,
    KubeApiError,
    NotFoundError,
    describe_failure,
    error_from_response,
)

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
# The server says it did not act on the request; every other retryable failure is ambiguous.
NOT_PROCESSED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: at most ``max_attempts`` attempts within ``max_delay`` seconds, waiting
    ``initial`` * 2**n seconds (full jitter, capped at ``maximum``) between them unless the server
    sends ``Retry-After``."""

    max_attempts: int = 8
    max_delay: float = 60.0
    initial: float = 0.5
    maximum: float = 10.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.max_delay < 0 or self.initial < 0 or self.maximum < 0:
            raise ValueError(f"invalid retry policy: {self}")


@dataclass(frozen=True)
class HttpStack:
    """The exception types of one official client and its HTTP library."""

    api_exception: type[BaseException]
    transport_errors: tuple[type[BaseException], ...]
    # Failures before the request left this machine (refused, DNS, connect timeout): never ambiguous.
    connect_errors: tuple[type[BaseException], ...]
    # Transport failures no retry can fix (certificates, TLS).
    fatal_errors: tuple[type[BaseException], ...]

    @property
    def raw_errors(self) -> tuple[type[BaseException], ...]:
        return (self.api_exception, *self.transport_errors)

    def _is(self, exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
        # urllib3 wraps the real cause of exhausted retries in MaxRetryError.reason.
        return isinstance(exc, types) or isinstance(getattr(exc, "reason", None), types)

    def is_transport_failure(self, exc: BaseException) -> bool:
        return isinstance(exc, self.transport_errors) and not isinstance(exc, self.api_exception)

    def status_of(self, exc: BaseException) -> int | None:
        status = getattr(exc, "status", None) if isinstance(exc, self.api_exception) else None
        return status if isinstance(status, int) else None

    def is_retryable(self, exc: BaseException) -> bool:
        if self.is_transport_failure(exc):
            return not self._is(exc, self.fatal_errors)
        return self.status_of(exc) in RETRYABLE_STATUSES

    def may_have_been_processed(self, exc: BaseException) -> bool:
        """True when a failed request might still have taken effect on the server."""
        if self.is_transport_failure(exc):
            return not self._is(exc, self.connect_errors)
        status = self.status_of(exc)
        return status in RETRYABLE_STATUSES and status not in NOT_PROCESSED_STATUSES


def retry_after_seconds(headers: Mapping[str, Any] | None, *, now: datetime | None = None) -> float | None:
    """The server's ``Retry-After`` as seconds from now (never negative), or None if absent/garbled."""
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff with full jitter before retry number ``attempt`` (1-based)."""
    ceiling = min(policy.maximum, policy.initial * 2 ** max(0, attempt - 1))
    return random.uniform(0, ceiling)


class WaitRetryAfterOrBackoff(tenacity.wait.wait_base):
    """tenacity wait: the server's ``Retry-After`` when given, else exponential backoff with jitter."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        hinted = retry_after_seconds(getattr(exc, "headers", None))
        return hinted if hinted is not None else backoff_seconds(self._policy, retry_state.attempt_number)


class CallGuard:
    """Retry decisions and error translation for one logical API call (all of its attempts)."""

    def __init__(
        self,
        policy: RetryPolicy,
        stack: HttpStack,
        target: Target,
        *,
        retry_ambiguous: bool = True,
        missing_ok: bool = False,
    ) -> None:
        self.policy = policy
        self.stack = stack
        self.target = target
        self.retry_ambiguous = retry_ambiguous
        self.missing_ok = missing_ok
        # Set once an attempt failed in a way that may have taken effect (see module docstring).
        self.may_have_landed = False

    def retrying_options(self) -> dict[str, Any]:
        """Keyword arguments for ``tenacity.Retrying`` / ``tenacity.AsyncRetrying``."""
        return {
            "stop": tenacity.stop_after_attempt(self.policy.max_attempts)
            | tenacity.stop_before_delay(self.policy.max_delay),
            "wait": WaitRetryAfterOrBackoff(self.policy),
            "retry": tenacity.retry_if_exception(self._should_retry),
            "retry_error_callback": self._give_up,
        }

    def _should_retry(self, exc: BaseException) -> bool:
        if not self.stack.is_retryable(exc):
            return False
        if self.stack.may_have_been_processed(exc):
            if not self.retry_ambiguous:
                return False
            self.may_have_landed = True
        return True

    def _give_up(self, retry_state: tenacity.RetryCallState) -> NoReturn:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        assert exc is not None  # tenacity only gives up on failed attempts here
        raise self._unavailable(exc, retry_state.attempt_number) from exc

    def _unavailable(self, exc: BaseException, attempts: int) -> ApiUnavailableError:
        target = self.target
        return ApiUnavailableError(
            f"the Kubernetes API server is unavailable: could not {target.verb} {target.subject} {target.where} "
            f"after {attempts} attempt(s); last failure: {describe_failure(exc)}",
            target=target,
            attempts=attempts,
            status=self.stack.status_of(exc),
        )

    def fail(self, exc: BaseException) -> None:
        """Raise the provider error for a raw failure that was not retried (chained to it), or return
        None for a 404 when the call allows a missing object."""
        error = self.translate(exc)
        if self.missing_ok and isinstance(error, NotFoundError):
            return None
        raise error from exc

    def translate(self, exc: BaseException) -> KubeApiError:
        """The provider error for a raw failure that was not retried."""
        target = self.target
        if not self.retry_ambiguous and self.stack.may_have_been_processed(exc):
            return CreateOutcomeUnknownError(
                f"creating {target.subject} {target.where} may or may not have succeeded "
                f"({describe_failure(exc)}); not retried because a retry with generateName could create a "
                "second object: list the namespace (e.g. by label) to find out",
                target=target,
                attempts=1,
                status=self.stack.status_of(exc),
            )
        if self.stack.is_transport_failure(exc):
            return self._unavailable(exc, 1)
        return error_from_response(
            self.stack.status_of(exc), str(getattr(exc, "reason", "") or ""), getattr(exc, "body", None), target
        )
