"""Blocking access to ray.io/v1 objects through an official ``kubernetes.client.ApiClient``.

The caller brings the ApiClient (and so the credentials); this module never reads a kubeconfig.
``AsyncRayObjectsClient`` (async_client.py) has the same methods and behaviour.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import Any, cast

import tenacity
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from kuberay_provider.core.kube import api_requests as req
from kuberay_provider.core.kube.api_requests import JsonPatch, KubeObject, PatchType
from kuberay_provider.core.kube.client_base import ObjectList, RayObjectsClientBase
from kuberay_provider.core.kube.errors import AlreadyExistsError
from kuberay_provider.core.kube.proxy import ProxyConnection, bearer_headers, build_proxy_connection
from kuberay_provider.core.kube.retry import CallGuard, HttpStack, RetryPolicy
from kuberay_provider.core.kube.watch import LineSplitter, WatchEvent, WatchQuery
from kuberay_provider.core.resources import RayKind

SYNC_STACK = HttpStack(
    api_exception=ApiException,
    transport_errors=(
        urllib3.exceptions.HTTPError,  # ProtocolError, timeouts, MaxRetryError, NewConnectionError...
        ConnectionError,
    ),
    connect_errors=(urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError),
    fatal_errors=(urllib3.exceptions.SSLError, urllib3.exceptions.LocationValueError),
)

_NO_URLLIB3_RETRIES = urllib3.util.Retry(total=0)


def _leave_retries_to_the_policy(api_client: Any) -> None:
    """Stop urllib3's default ``Retry(3)`` from stacking under our RetryPolicy.

    Left alone, urllib3 silently retries 429/503-with-Retry-After and resets of idempotent requests
    up to 3 times inside *each* of our attempts, so ``max_attempts=8`` would mean 32 requests.
    Only done when the caller did not choose ``Configuration.retries`` explicitly. Pools are keyed by
    their settings, so requests from now on use new pools; requests in flight are not disturbed.
    ``Retry(total=0)`` rather than ``False`` keeps failures wrapped in MaxRetryError: the kubernetes
    client turns a bare urllib3 SSLError into an ApiException it then fails to decode.
    """
    pool_manager = getattr(getattr(api_client, "rest_client", None), "pool_manager", None)
    if api_client.configuration.retries is None and pool_manager is not None:
        pool_manager.connection_pool_kw["retries"] = _NO_URLLIB3_RETRIES


class RayObjectsClient(RayObjectsClientBase):
    """CRUD and watch for RayJob / RayCluster / RayService as plain dicts, with retries.

    Errors are the subclasses of ``KubeApiError`` in ``kuberay_provider.core.kube.errors``.
    """

    _stack = SYNC_STACK

    def __init__(self, api_client: Any, retry: RetryPolicy | None = None) -> None:
        super().__init__(api_client, retry)
        _leave_retries_to_the_policy(api_client)

    def _call(self, request: req.KubeRequest, guard: CallGuard | None = None, *, stream: bool = False) -> Any:
        guard = guard or self._guard(request)
        try:
            return tenacity.Retrying(**guard.retrying_options())(self._send, request, stream)
        except SYNC_STACK.raw_errors as exc:
            return guard.fail(exc)

    def _send(self, request: req.KubeRequest, stream: bool) -> Any:
        return self.api_client.call_api(**request.call_api_arguments(stream=stream))

    # The untyped kubernetes client deserialises a JSON body to a dict (response type "object"), and a
    # request that allows a missing object answers None for 404.
    def _object(self, request: req.KubeRequest, guard: CallGuard | None = None) -> KubeObject:
        return cast(KubeObject, self._call(request, guard))

    def _object_or_none(self, request: req.KubeRequest) -> KubeObject | None:
        return cast("KubeObject | None", self._call(request))

    def create(self, manifest: KubeObject, *, dry_run: bool = False) -> KubeObject:
        """Create the object in its metadata.namespace (default "default").

        ``dry_run=True`` asks for a server-side dry run (``dryRun=All``): admission and validation
        run, nothing is stored. A retried named create that meets 409 AlreadyExists returns the
        existing object, because our own earlier attempt created it (see ``Creation.may_have_landed``).
        """
        creation = self._plan_create(manifest, dry_run)
        try:
            return self._object(creation.request, creation.guard)
        except AlreadyExistsError as conflict:
            return self._object(creation.reattach_request(conflict))

    def get(self, kind: RayKind, namespace: str, name: str) -> KubeObject:
        """The object; raises NotFoundError when it does not exist."""
        return self._object(req.get_request(kind, namespace, name))

    def find(self, kind: RayKind, namespace: str, name: str) -> KubeObject | None:
        """The object, or None when it does not exist."""
        return self._object_or_none(req.get_request(kind, namespace, name).allowing_missing())

    def list_with_version(self, kind: RayKind, namespace: str, *, label_selector: str | None = None) -> ObjectList:
        """The objects and the list's resourceVersion (to start a watch from)."""
        return ObjectList.from_response(self._object(req.list_request(kind, namespace, label_selector=label_selector)))

    def list(self, kind: RayKind, namespace: str, *, label_selector: str | None = None) -> req.KubeObjects:
        """The objects in the namespace, optionally filtered by an equality label selector."""
        return self.list_with_version(kind, namespace, label_selector=label_selector).items

    def patch(
        self, kind: RayKind, namespace: str, name: str, body: KubeObject | JsonPatch, *, patch_type: PatchType = "merge"
    ) -> KubeObject:
        """Patch the object: a JSON merge patch by default, ``"json"`` (a list of operations) or
        ``"strategic"``. Include ``metadata.resourceVersion`` for optimistic concurrency (ConflictError)."""
        return self._object(req.patch_request(kind, namespace, name, body, patch_type))

    def delete(self, kind: RayKind, namespace: str, name: str, *, propagation_policy: str = "Foreground") -> bool:
        """Delete the object; False when it was already gone."""
        request = req.delete_request(kind, namespace, name, propagation_policy).allowing_missing()
        return self._call(request) is not None

    def watch(
        self,
        kind: RayKind,
        namespace: str,
        *,
        name: str | None = None,
        label_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[WatchEvent]:
        """Stream ADDED / MODIFIED / DELETED events until ``timeout_seconds`` (None: forever).

        Without ``resource_version`` the current objects come first as ADDED. Dropped connections
        resume from the last resourceVersion; 410 Gone relists and emits what changed meanwhile.
        """
        query = WatchQuery(kind, namespace, name, label_selector, resource_version, timeout_seconds)
        session = self._watch_session(query)
        while (request := session.next_request()) is not None:
            if request.is_list:
                yield from session.on_list(self._call(request))
                continue
            try:
                with closing(self._stream_lines(request)) as lines:
                    for line in lines:
                        yield from session.on_line(line)
                session.on_stream_end()
            except Exception as exc:
                session.handle_stream_failure(exc)
            time.sleep(session.take_pause())

    def _stream_lines(self, request: req.KubeRequest) -> Generator[bytes, None, None]:
        response = self._call(request, stream=True)
        try:
            splitter = LineSplitter()
            for chunk in response.stream(amt=None):
                yield from splitter.feed(chunk)
        finally:
            response.close()

    def read_service(self, namespace: str, name: str) -> KubeObject | None:
        """The core/v1 Service, or None when it does not exist."""
        return self._object_or_none(req.service_request(namespace, name).allowing_missing())

    def read_crd(self, name: str) -> KubeObject:
        """An apiextensions.k8s.io/v1 CustomResourceDefinition, e.g. ``rayjobs.ray.io``."""
        return self._object(req.crd_request(name))

    def proxy_connection(self, namespace: str, service: str, port: str = "dashboard") -> ProxyConnection:
        """URL, TLS settings and auth headers to call ``service`` through the API server's proxy. The
        headers are read per request, through the Configuration's refresh hook (which runs an exec
        plugin again once its token is about to expire)."""
        configuration = self.api_client.configuration
        return build_proxy_connection(
            configuration, namespace, service, port, lambda: bearer_headers(configuration.auth_settings())
        )
