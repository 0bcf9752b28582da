"""Head Services as KubeRay builds them (common/service.go, common/job.go), plus the local endpoints annotation."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from . import kuberay as k


def head_container(cluster_spec: Mapping[str, Any]) -> Mapping[str, Any]:
    containers: list[Mapping[str, Any]] = (
        ((cluster_spec.get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    ).get("containers") or [{}]
    return containers[0]


def service_ports(cluster_spec: Mapping[str, Any]) -> dict[str, int]:
    """getServicePorts: the head container's ports (unnamed ones as ``<port>-port``), else the defaults;
    a metrics port is always added."""
    ports: dict[str, int] = {}
    for port in head_container(cluster_spec).get("ports") or []:
        name = port.get("name") or f"{port['containerPort']}-port"
        ports[name] = int(port["containerPort"])
    if not ports:
        ports = dict(k.DEFAULT_PORTS)
    ports.setdefault(k.METRICS_PORT_NAME, k.DEFAULT_PORTS[k.METRICS_PORT_NAME])
    return ports


def build_cluster_head_service(cluster: Mapping[str, Any]) -> dict[str, Any]:
    """BuildServiceForHeadPod: headless by default, ports sorted by name, a custom headService merged in."""
    spec = cluster.get("spec") or {}
    cluster_name = cluster["metadata"]["name"]
    selector = k.head_service_selector(cluster_name)
    template_labels = (((spec.get("headGroupSpec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels"
    ) or {}
    if k.APP_NAME_LABEL in template_labels:
        selector[k.APP_NAME_LABEL] = template_labels[k.APP_NAME_LABEL]
    ports = [{"name": name, "port": port, "appProtocol": "tcp"} for name, port in sorted(service_ports(spec).items())]
    service_type = (spec.get("headGroupSpec") or {}).get("serviceType") or ""
    custom = (spec.get("headGroupSpec") or {}).get("headService")
    if custom:
        service = copy.deepcopy(dict(custom))
        service_meta = service.setdefault("metadata", {})
        service_meta.setdefault("annotations", {}).update(spec.get("headServiceAnnotations") or {})
        service_meta["labels"] = {**(service_meta.get("labels") or {}), **selector}
        service_meta["name"] = service_meta.get("name") or k.cluster_head_service_name(cluster)
        service_meta["namespace"] = cluster["metadata"].get("namespace")
        svc_spec = service.setdefault("spec", {})
        svc_spec["selector"] = dict(selector)
        svc_spec["ports"] = list(svc_spec.get("ports") or []) + ports
        svc_spec["type"] = svc_spec.get("type") or service_type or "ClusterIP"
    else:
        service = {
            "metadata": {
                "name": k.cluster_head_service_name(cluster),
                "namespace": cluster["metadata"].get("namespace"),
                "labels": dict(selector),
                "annotations": dict(spec.get("headServiceAnnotations") or {}),
            },
            "spec": {"selector": dict(selector), "ports": ports},
        }
        if service_type:
            service["spec"]["type"] = service_type
        if service_type in ("", "ClusterIP"):
            # KubeRay makes the head service headless: a RayCluster has at most one head Pod.
            service["spec"]["clusterIP"] = "None"
            service["spec"]["publishNotReadyAddresses"] = True
    service["apiVersion"], service["kind"] = "v1", "Service"
    return service


def build_owner_head_service(owner: Mapping[str, Any], crd: str, cluster: Mapping[str, Any]) -> dict[str, Any]:
    """BuildHeadServiceForRayJob / BuildHeadServiceForRayService: the cluster's head Service renamed
    ``<owner>-head-svc`` and relabelled with the owner's origin labels."""
    service = build_cluster_head_service(cluster)
    owner_name = owner["metadata"]["name"]
    service["metadata"]["name"] = k.owner_head_service_name(owner_name)
    service["metadata"]["namespace"] = owner["metadata"].get("namespace")
    service["metadata"]["labels"] = {
        k.RAY_ORIGINATED_FROM_CR_NAME: owner_name,
        k.RAY_ORIGINATED_FROM_CRD: crd,
        k.RAY_NODE_TYPE_LABEL: "head",
        k.RAY_ID_LABEL: k.identifier(owner_name, "head"),
    }
    service["metadata"]["ownerReferences"] = [k.owner_reference(owner)]
    return service


SERVE_PORT_NAME = "serve"  # utils.ServingPortName


class ServeServiceError(Exception):
    """BuildServeService refused: the head container declares ports, none of them a serving one."""


SERVE_PORT_MISSING = (
    "Please specify a port named 'serve' (or with the prefix 'serve-', e.g. 'serve-grpc') in the Ray head "
    "container; otherwise, the Kubernetes service for Ray Serve will not be created."
)


def is_serving_port(name: str) -> bool:
    """isServingPort: ``serve`` or ``serve-*`` (e.g. serve-grpc)."""
    return name == SERVE_PORT_NAME or name.startswith(SERVE_PORT_NAME + "-")


def serve_service_name(rayservice: Mapping[str, Any]) -> str:
    """RayServiceServeServiceNamespacedName: spec.serveService.metadata.name, else ``<rayservice>-serve-svc``."""
    custom = ((rayservice.get("spec") or {}).get("serveService") or {}).get("metadata") or {}
    return custom.get("name") or f"{rayservice['metadata']['name']}-serve-svc"


def build_serve_service(rayservice: Mapping[str, Any], cluster: Mapping[str, Any]) -> dict[str, Any]:
    """BuildServeService for a RayService (not incremental): the cluster's serving head ports, or the
    user's spec.serveService with those ports merged in; ServeServiceError when there is no port at all."""
    name = rayservice["metadata"]["name"]
    namespace = rayservice["metadata"].get("namespace")
    labels = {
        k.RAY_ORIGINATED_FROM_CR_NAME: name,
        k.RAY_ORIGINATED_FROM_CRD: k.CRD_RAYSERVICE,
        k.RAY_SERVE_LABEL: f"{name}-serve",
    }
    selector = {k.RAY_CLUSTER_LABEL: cluster["metadata"]["name"], k.RAY_SERVE_LABEL: "true"}
    ports = [
        {"name": port_name, "port": port}
        for port_name, port in service_ports(cluster.get("spec") or {}).items()
        if is_serving_port(port_name)
    ]
    spec = rayservice.get("spec") or {}
    service_type = ((spec.get("rayClusterConfig") or {}).get("headGroupSpec") or {}).get("serviceType") or ""
    custom = spec.get("serveService")
    if not ports and custom is None:
        raise ServeServiceError(SERVE_PORT_MISSING)
    if custom is not None:
        service = copy.deepcopy(dict(custom))
        svc_spec = service.setdefault("spec", {})
        svc_spec["selector"] = selector
        if ports:
            # A user port of the same name wins (it may carry an appProtocol such as kubernetes.io/h2c).
            by_name = {p.get("name"): p for p in svc_spec.get("ports") or []}
            svc_spec["ports"] = [by_name.get(p["name"], p) for p in ports]
        service_meta = service.setdefault("metadata", {})
        service_meta.setdefault("annotations", {})
        service_meta["labels"] = {**(service_meta.get("labels") or {}), **labels}
        service_meta["name"] = service_meta.get("name") or serve_service_name(rayservice)
        service_meta["namespace"] = namespace
        svc_spec["type"] = svc_spec.get("type") or service_type or "ClusterIP"
    else:
        service = {
            "metadata": {"name": serve_service_name(rayservice), "namespace": namespace, "labels": labels},
            "spec": {"selector": selector, "ports": ports, **({"type": service_type} if service_type else {})},
        }
    service["apiVersion"], service["kind"] = "v1", "Service"
    service["metadata"]["ownerReferences"] = [k.owner_reference(rayservice)]
    return service


def endpoints_annotation(service: Mapping[str, Any], backend_urls: Mapping[str, str]) -> str:
    """The local proxy map: each Service port, by name and by number, to the backend's URL for it.

    A port is matched by name, else by KubeRay's default number for a name (8265 -> dashboard); one the
    backend has no listener for (e.g. a custom port) is left out.
    """
    default_names = {number: name for name, number in k.DEFAULT_PORTS.items()}
    mapping: dict[str, str] = {}
    for port in (service.get("spec") or {}).get("ports") or []:
        url = backend_urls.get(port.get("name", "")) or backend_urls.get(default_names.get(int(port["port"]), ""))
        if url:
            mapping[port["name"]] = url
            mapping[str(port["port"])] = url
    return json.dumps(mapping, sort_keys=True)


def with_endpoints_annotation(service: dict[str, Any], backend_urls: Mapping[str, str]) -> dict[str, Any]:
    annotations = service["metadata"].setdefault("annotations", {})
    annotations[k.ENDPOINTS_ANNOTATION] = endpoints_annotation(service, backend_urls)
    return service


def port_of(service: Mapping[str, Any], port_name: str) -> int | None:
    for port in (service.get("spec") or {}).get("ports") or []:
        if port.get("name") == port_name:
            return int(port["port"])
    return None
