"""The Airflow adapter: a thin layer over ``kuberay_provider.core``.

Public names: ``hooks.KubeRayHook``, ``operators.RayJobOperator``, ``operators.RayJobCleanupOperator``,
``operators.RayClusterCreateOperator`` / ``RayClusterScaleOperator`` / ``RayClusterDeleteOperator``,
``operators.RayServiceOperator`` / ``RayServiceDeleteOperator``, ``sensors.RayJobSensor`` / ``RayServiceSensor``, ``triggers.RayJobTrigger``,
``decorators.kuberay_task`` (``@task.kuberay``). Registered with Airflow through the ``apache_airflow_provider`` entry point.
"""

from __future__ import annotations

from typing import Any

from kuberay_provider import __version__

_MODULE = "kuberay_provider.airflow"
# Here rather than in hooks, so the trigger module can name them without importing the Kubernetes clients.
CONN_TYPE = "kuberay"
DEFAULT_CONN_ID = "kuberay_default"
INTEGRATION = "KubeRay"


def _modules(*names: str) -> list[dict[str, Any]]:
    return [{"integration-name": INTEGRATION, "python-modules": [f"{_MODULE}.{name}" for name in names]}]


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "kuberay-provider",
        "name": "KubeRay",
        "description": "Run Ray jobs on Kubernetes through KubeRay (ray.io/v1 RayJob) from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION,
                "external-doc-url": "https://docs.ray.io/en/latest/cluster/kubernetes/index.html",
                "tags": ["software"],
            }
        ],
        "hooks": _modules("hooks"),
        "operators": _modules("operators.rayjob", "operators.raycluster", "operators.rayservice"),
        "sensors": _modules("sensors"),
        "triggers": _modules("triggers"),
        "extra-links": [f"{_MODULE}.links.RayDashboardLink"],
        "task-decorators": [{"name": "kuberay", "class-name": f"{_MODULE}.decorators.kuberay.kuberay_task"}],
        "connection-types": [
            {
                "hook-class-name": f"{_MODULE}.hooks.KubeRayHook",
                "hook-name": "KubeRay",
                "connection-type": CONN_TYPE,
                "conn-fields": {
                    "kube_config_path": {"label": "Kube config path", "schema": {"type": ["string", "null"]}},
                    "kube_config": {
                        "label": "Kube config (YAML or JSON content)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "cluster_context": {"label": "Cluster context", "schema": {"type": ["string", "null"]}},
                    "in_cluster": {"label": "In cluster configuration", "schema": {"type": ["boolean", "null"]}},
                    "namespace": {"label": "Namespace", "schema": {"type": ["string", "null"]}},
                    "disable_verify_ssl": {
                        "label": "Disable TLS verification",
                        "schema": {"type": ["boolean", "null"]},
                    },
                    "dashboard_url_template": {
                        "label": "Ray dashboard URL template for the workers (empty: through the API server's service proxy)",
                        "description": "e.g. http://{service}.{namespace}.svc.cluster.local:8265",
                        "schema": {"type": ["string", "null"]},
                    },
                    "dashboard_token": {
                        "label": "Ray dashboard token (Ray's token authentication; empty: none)",
                        "description": "The cluster's Ray auth token; sent as X-Ray-Authorization: Bearer <token> with "
                        "every Jobs API request, direct or through the service proxy",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "dashboard_browser_url": {
                        "label": "Ray dashboard URL for browsers (the tasks' Ray Dashboard link)",
                        "description": "e.g. https://ray.example.com/{namespace}/{cluster}; may use {namespace}, {cluster}, "
                        "{rayjob}, {job_id}. Empty: the link says how to set it",
                        "schema": {"type": ["string", "null"]},
                    },
                    "instance_id": {
                        "label": "Instance id (when several Airflow deployments share the namespace)",
                        "description": "e.g. prod, staging: lower-case letters, digits and '-'. Enters the names and "
                        "labels of the RayJobs and RayClusters the tasks create, so deployments never "
                        "re-attach to or clean up each other's. Empty: none",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {"hidden-fields": ["host", "schema", "login", "password", "port", "extra"]},
            }
        ],
    }
