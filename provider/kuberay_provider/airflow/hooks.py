"""KubeRayHook: a ``kuberay`` connection, read by cncf.kubernetes' KubernetesHook machinery.

The credentials (kubeconfig path or content, context, in-cluster, TLS verification) are loaded exactly as
the ``kubernetes`` connection loads them, by subclassing KubernetesHook / AsyncKubernetesHook; this hook
adds only what KubeRay needs on top: the core's Kubernetes clients, the CRD schemas for validation, and
how to reach the Ray dashboard (the API server's service proxy by default, or a direct URL template).
Kubeconfig contents and bearer tokens are registered with Airflow's secrets masker, so they never reach
a log.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook
from airflow.sdk.log import mask_secret

from kuberay_provider.airflow import CONN_TYPE
from kuberay_provider.airflow import DEFAULT_CONN_ID as DEFAULT_CONN_ID  # re-exported: the operators import it here
from kuberay_provider.core.clusters import RayClusterLifecycle
from kuberay_provider.core.dashboard import DashboardAccess
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.job_runner import RayJobRunner
from kuberay_provider.core.kube.async_client import AsyncRayObjectsClient
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.naming import check_instance_id
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.services import RayServiceLifecycle
from kuberay_provider.core.validation import SchemaRegistry, installed_schemas

DASHBOARD_URL_FIELD = "dashboard_url_template"
DASHBOARD_TOKEN_FIELD = "dashboard_token"  # Ray's token authentication; masked like the kubeconfig
# Several Airflow deployments sharing a namespace: what sets this deployment's RayJobs apart (core.naming).
INSTANCE_ID_FIELD = "instance_id"


def mask_credentials(configuration: Any) -> None:
    """Register every credential a loaded client Configuration holds with the secrets masker."""
    secrets = [
        *list((getattr(configuration, "api_key", None) or {}).values()),
        getattr(configuration, "password", None),
    ]
    for value in secrets:
        if value:
            mask_secret(str(value))
            mask_secret(str(value).split(" ", 1)[-1])  # "Bearer <token>": the token alone too


class KubeRayConnection:
    """What the sync and the async hook share: the connection type and its KubeRay-only fields."""

    conn_name_attr = "kuberay_conn_id"
    kuberay_conn_id: str | None  # set by each hook's __init__
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "KubeRay"

    @staticmethod
    def dashboard_access(extras: dict[str, Any], verify: bool) -> DashboardAccess:
        template = str(extras.get(DASHBOARD_URL_FIELD) or "").strip() or None
        token = str(extras.get(DASHBOARD_TOKEN_FIELD) or "").strip() or None  # masked by mask_extras
        return DashboardAccess(url_template=template, verify=verify, token=token)

    def instance_of(self, extras: dict[str, Any]) -> str:
        """The connection's ``instance_id`` ("" when not set); ConfigurationError naming the field if invalid."""
        try:
            return check_instance_id(extras.get(INSTANCE_ID_FIELD), INSTANCE_ID_FIELD)
        except ConfigurationError as invalid:
            raise ConfigurationError(f"connection {self.kuberay_conn_id!r}: {invalid}") from None

    @staticmethod
    def mask_extras(extras: dict[str, Any]) -> None:
        # A kubeconfig pasted into the connection holds tokens or keys, and so does the dashboard token:
        # never let them reach a log.
        kube_config = extras.get("kube_config") or extras.get("extra__kubernetes__kube_config")
        if kube_config:
            mask_secret(kube_config if isinstance(kube_config, str) else str(kube_config))
        if token := str(extras.get(DASHBOARD_TOKEN_FIELD) or "").strip():
            mask_secret(token)


class KubeRayHook(KubeRayConnection, KubernetesHook):
    """Sync access to RayJobs for operators and sensors.

    :param kuberay_conn_id: a connection of type ``kuberay`` (default ``kuberay_default``). Its fields are
        those of the ``kubernetes`` connection (``kube_config_path``, ``kube_config``, ``cluster_context``,
        ``in_cluster``, ``namespace``, ``disable_verify_ssl``) plus ``dashboard_url_template``,
        ``dashboard_token`` and ``instance_id``.
    """

    def __init__(self, kuberay_conn_id: str | None = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        from kubernetes.client import Configuration

        # A private Configuration: KubernetesHook would otherwise load credentials into the process-wide
        # default, which other hooks (other clusters) share.
        kwargs.setdefault("client_configuration", Configuration())
        super().__init__(conn_id=kuberay_conn_id, **kwargs)
        self.kuberay_conn_id = kuberay_conn_id

    def get_conn(self) -> Any:
        self.mask_extras(self.conn_extras)
        api_client = super().get_conn()
        mask_credentials(api_client.configuration)
        return api_client

    @cached_property
    def objects_client(self) -> RayObjectsClient:
        return RayObjectsClient(self.api_client)

    @cached_property
    def instance_id(self) -> str:
        """This deployment's instance id: it enters the names and run labels of what the tasks create."""
        return self.instance_of(self.conn_extras)

    @cached_property
    def dashboard(self) -> DashboardAccess:
        return self.dashboard_access(self.conn_extras, verify=bool(self.api_client.configuration.verify_ssl))

    def _schemas(self, validate_schema: bool) -> SchemaRegistry | None:
        """The CRD schemas, read from the cluster itself (what a real client validates against)."""
        return installed_schemas(self.api_client) if validate_schema else None

    def lifecycle(self, *, validate_schema: bool = True) -> RayJobLifecycle:
        """The core's RayJob steps on this connection."""
        return RayJobLifecycle(self.objects_client, schemas=self._schemas(validate_schema), dashboard=self.dashboard)

    def cluster_lifecycle(self, *, validate_schema: bool = True) -> RayClusterLifecycle:
        """The core's RayCluster steps on this connection."""
        return RayClusterLifecycle(self.objects_client, schemas=self._schemas(validate_schema))

    def service_lifecycle(self, *, validate_schema: bool = True) -> RayServiceLifecycle:
        """The core's RayService steps on this connection."""
        return RayServiceLifecycle(self.objects_client, schemas=self._schemas(validate_schema))

    def runner(self, **kwargs: Any) -> RayJobRunner:
        return RayJobRunner(self.lifecycle(), **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        """Reach the API server, find KubeRay's RayJob CRD and list RayJobs in the namespace."""
        try:
            crd = self.objects_client.read_crd(RAYJOB.crd_name)
            versions = [v.get("name") for v in (crd.get("spec") or {}).get("versions", [])]
            namespace = self.get_namespace() or "default"
            count = len(self.objects_client.list(RAYJOB, namespace))
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, (
            f"Connected to {self.objects_client.api_server_url}: KubeRay RayJob CRD ({', '.join(map(str, versions))}), "
            f"{count} RayJob(s) in namespace {namespace!r}"
        )


class AsyncKubeRayHook(KubeRayConnection, AsyncKubernetesHook):
    """Async access for triggers (the triggerer's event loop), on the same ``kuberay`` connection."""

    def __init__(self, kuberay_conn_id: str | None = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(conn_id=kuberay_conn_id, **kwargs)
        self.kuberay_conn_id = kuberay_conn_id

    @contextlib.asynccontextmanager
    async def objects_client(self) -> AsyncIterator[AsyncRayObjectsClient]:
        self.mask_extras(await self.get_conn_extras())
        async with self.get_conn() as api_client:
            mask_credentials(api_client.configuration)
            yield AsyncRayObjectsClient(api_client, reauthenticate=self.reload_credentials)

    async def reload_credentials(self) -> None:
        """Load the connection's credentials into the client's Configuration again (after a 401).
        cncf.kubernetes reloads a kubeconfig with an exec plugin every time, so the plugin hands out a
        fresh token; any other it keeps as first loaded. Its ``_load_config`` is the one way in."""
        await self._load_config()  # type: ignore[no-untyped-call]  # cncf.kubernetes leaves it unannotated
        if self.client_configuration is not None:
            mask_credentials(self.client_configuration)
