"""Names, labels and constants exactly as KubeRay v1.7.0 spells them.

Sources: ray-operator/controllers/ray/utils/constant.go, utils/util.go (GenerateRayClusterName,
GenerateRayJobId, GenerateHeadServiceName, CheckLabel), common/pod.go (labelPod) and common/service.go.
"""

from __future__ import annotations

import random
import string
from collections.abc import Mapping
from typing import Any

RAY_ORIGINATED_FROM_CR_NAME = "ray.io/originated-from-cr-name"
RAY_ORIGINATED_FROM_CRD = "ray.io/originated-from-crd"
RAY_CLUSTER_LABEL = "ray.io/cluster"
RAY_NODE_TYPE_LABEL = "ray.io/node-type"
RAY_NODE_GROUP_LABEL = "ray.io/group"
RAY_NODE_LABEL = "ray.io/is-ray-node"
RAY_ID_LABEL = "ray.io/identifier"
RAY_SERVE_LABEL = "ray.io/serve"
RAY_JOB_SUBMISSION_MODE_LABEL = "ray.io/job-submission-mode"
APP_NAME_LABEL = "app.kubernetes.io/name"
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
APPLICATION_NAME = "kuberay"
COMPONENT_NAME = "kuberay-operator"
DISABLE_PROVISIONED_HEAD_RESTART_ANNOTATION = "ray.io/disable-provisioned-head-restart"
RAYJOB_FINALIZER = "ray.io/rayjob-finalizer"
HEAD_GROUP_NAME = "headgroup"
SUBMITTER_CONTAINER_NAME = "ray-job-submitter"
CLUSTER_SELECTOR_KEY = "ray.io/cluster"  # RayJobClusterSelectorKey

# Not KubeRay's: the local control plane's annotation telling the API server's service proxy where a
# Service's ports really listen (port name and number -> base URL).
ENDPOINTS_ANNOTATION = "local.kuberay-provider.io/endpoints"
# Every URL the backend listens on for a cluster (also ports the head Service does not name, such as
# Serve's 8000), so a RayService's serve Service can be routed without a head port of its own.
BACKEND_URLS_ANNOTATION = "local.kuberay-provider.io/backend-urls"

DEFAULT_PORTS: dict[str, int] = {  # getDefaultPorts
    "client": 10001,
    "gcs-server": 6379,
    "dashboard": 8265,
    "metrics": 8080,
    "serve": 8000,
}
DASHBOARD_PORT_NAME = "dashboard"
METRICS_PORT_NAME = "metrics"
CLUSTER_DOMAIN = "cluster.local"

CRD_RAYJOB = "RayJob"
CRD_RAYCLUSTER = "RayCluster"
CRD_RAYSERVICE = "RayService"

_ALPHANUMERIC = string.ascii_lowercase + string.digits


def random_suffix(length: int = 5) -> str:
    """k8s.io/apimachinery rand.String: lowercase alphanumerics (KubeRay never uses vowels-free sets)."""
    return "".join(random.choice(_ALPHANUMERIC) for _ in range(length))


def generate_ray_cluster_name(owner_name: str) -> str:
    """GenerateRayClusterName: ``<owner>-<5 random>``."""
    return f"{owner_name}-{random_suffix()}"


def generate_ray_job_id(rayjob_name: str) -> str:
    """GenerateRayJobId: ``<rayjob>-<5 random>``."""
    return f"{rayjob_name}-{random_suffix()}"


def check_label(value: str) -> str:
    """CheckLabel: at most 63 characters (cut from the front), no leading punctuation."""
    if len(value) > 63:
        value = value[len(value) - 63 :]
    if value and not value[0].isalnum():
        value = "r" + value[1:]
    return value


def identifier(owner_name: str, node_type: str) -> str:
    """The ``ray.io/identifier`` label value (GenerateIdentifier + CheckLabel)."""
    return check_label(f"{owner_name}-{node_type}")


def owner_head_service_name(owner_name: str) -> str:
    """GenerateHeadServiceName for RayJobCRD / RayServiceCRD: ``<owner>-head-svc``."""
    return f"{owner_name}-head-svc"


def cluster_head_service_name(cluster: Mapping[str, Any]) -> str:
    """GenerateHeadServiceName for RayClusterCRD: headGroupSpec.headService.name wins."""
    head_service = ((cluster.get("spec") or {}).get("headGroupSpec") or {}).get("headService") or {}
    custom = (head_service.get("metadata") or {}).get("name")
    return custom or owner_head_service_name(cluster["metadata"]["name"])


def head_service_url(service_name: str, namespace: str, port: int) -> str:
    """FetchHeadServiceURL: the in-cluster DNS name KubeRay writes into status.dashboardURL."""
    return f"{service_name}.{namespace}.svc.{CLUSTER_DOMAIN}:{port}"


def pod_labels(
    node_type: str, cluster_name: str, group_name: str, template_labels: Mapping[str, str] | None
) -> dict[str, str]:
    """labelPod: KubeRay's labels; template labels may add to them but not override type/group/cluster."""
    labels = {
        RAY_NODE_LABEL: "yes",
        RAY_CLUSTER_LABEL: cluster_name,
        RAY_NODE_TYPE_LABEL: node_type,
        RAY_NODE_GROUP_LABEL: group_name,
        RAY_ID_LABEL: identifier(cluster_name, node_type),
        APP_NAME_LABEL: APPLICATION_NAME,
        CREATED_BY_LABEL: COMPONENT_NAME,
    }
    for key, value in (template_labels or {}).items():
        if key not in (RAY_NODE_TYPE_LABEL, RAY_NODE_GROUP_LABEL, RAY_CLUSTER_LABEL):
            labels[key] = value
    return labels


def head_service_selector(cluster_name: str) -> dict[str, str]:
    """HeadServiceLabels: the selector (and labels) of a RayCluster's head Service."""
    return {
        RAY_CLUSTER_LABEL: cluster_name,
        RAY_NODE_TYPE_LABEL: "head",
        RAY_ID_LABEL: identifier(cluster_name, "head"),
        APP_NAME_LABEL: APPLICATION_NAME,
        CREATED_BY_LABEL: COMPONENT_NAME,
    }


def head_service_list_labels(cluster_name: str) -> dict[str, str]:
    """RayClusterHeadServiceListOptions: how KubeRay finds a RayCluster's head Service."""
    return {
        RAY_CLUSTER_LABEL: cluster_name,
        RAY_NODE_TYPE_LABEL: "head",
        RAY_ID_LABEL: identifier(cluster_name, "head"),
    }


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """ctrl.SetControllerReference: controller=true, blockOwnerDeletion=true."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", "ray.io/v1"),
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }
