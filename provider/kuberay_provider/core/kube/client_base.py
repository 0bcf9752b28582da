"""What the sync and the async RayObjectsClient share apart from the I/O itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from kuberay_provider.core.kube.api_requests import (
    DEFAULT_NAMESPACE,
    KubeObject,
    KubeRequest,
    create_request,
    get_request,
    manifest_kind,
)
from kuberay_provider.core.kube.errors import AlreadyExistsError
from kuberay_provider.core.kube.retry import CallGuard, HttpStack, RetryPolicy
from kuberay_provider.core.kube.watch import WatchQuery, WatchSession
from kuberay_provider.core.resources import RayKind


@dataclass(frozen=True)
class ObjectList:
    """A list response: the objects and the resourceVersion to start a watch from."""

    items: list[KubeObject]
    resource_version: str | None

    @classmethod
    def from_response(cls, response: KubeObject) -> ObjectList:
        version = (response.get("metadata") or {}).get("resourceVersion")
        return cls(items=list(response.get("items") or []), resource_version=version or None)


@dataclass(frozen=True)
class Creation:
    request: KubeRequest
    guard: CallGuard
    kind: RayKind
    namespace: str
    name: str | None  # None with generateName
    dry_run: bool

    @property
    def may_have_landed(self) -> bool:
        """Whether a 409 AlreadyExists now means that our own earlier attempt created the object.

        Only for a named, real create whose earlier attempt failed ambiguously (reset after send,
        500/502/504). Caveat: if someone else created the same name in that window, theirs is
        returned — the name is the only identity a create has.
        """
        return self.name is not None and not self.dry_run and self.guard.may_have_landed

    def reattach_request(self, conflict: AlreadyExistsError) -> KubeRequest:
        """The GET that fetches the object our own earlier attempt created; re-raises ``conflict``
        when the existing object cannot be ours."""
        if not self.may_have_landed:
            raise conflict
        return get_request(self.kind, self.namespace, str(self.name))


class RayObjectsClientBase:
    _stack: ClassVar[HttpStack]

    def __init__(self, api_client: Any, retry: RetryPolicy | None = None) -> None:
        self.api_client = api_client
        self.retry = retry or RetryPolicy()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(api_server_url={self.api_server_url!r})"

    @property
    def api_server_url(self) -> str:
        """The API server's base URL (no credentials)."""
        return str(self.api_client.configuration.host).rstrip("/")

    def _guard(self, request: KubeRequest) -> CallGuard:
        return CallGuard(self.retry, self._stack, request.target, missing_ok=request.missing_ok)

    def _plan_create(self, manifest: KubeObject, dry_run: bool) -> Creation:
        kind = manifest_kind(manifest)
        request = create_request(manifest, dry_run=dry_run)
        metadata = manifest.get("metadata") or {}
        name = metadata.get("name") or None
        # With generateName a blind retry could create a second object: never retry ambiguously.
        guard = CallGuard(self.retry, self._stack, request.target, retry_ambiguous=bool(name) or dry_run)
        namespace = metadata.get("namespace") or DEFAULT_NAMESPACE
        return Creation(request, guard, kind, namespace, name, dry_run)

    def _watch_session(self, query: WatchQuery) -> WatchSession:
        return WatchSession(query, retry=self.retry, is_connection_failure=self._stack.is_transport_failure)
