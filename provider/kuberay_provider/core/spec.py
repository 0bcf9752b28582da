"""Building RayJob, RayCluster and RayService manifests from keyword parameters.

Every ``spec`` field of KubeRay v1.7.0 (ray.io/v1) has a snake_case keyword; the value is written under
KubeRay's camelCase name unchanged, with two conveniences users expect from Python:
``runtime_env`` (a dict, turned into ``runtimeEnvYAML``) and ``entrypoint_resources`` (a dict, turned
into the JSON string KubeRay wants).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import yaml

from kuberay_provider.core.errors import ArgumentError, ConfigurationError
from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB, RAYSERVICE, RayKind

# snake_case keyword -> KubeRay's field name, in the order of KubeRay's RayJobSpec.
RAYJOB_SPEC_FIELDS: dict[str, str] = {
    "active_deadline_seconds": "activeDeadlineSeconds",
    "backoff_limit": "backoffLimit",
    "cluster_selector": "clusterSelector",
    "deletion_strategy": "deletionStrategy",
    "entrypoint": "entrypoint",
    "entrypoint_num_cpus": "entrypointNumCpus",
    "entrypoint_num_gpus": "entrypointNumGpus",
    "entrypoint_resources": "entrypointResources",
    "job_id": "jobId",
    "managed_by": "managedBy",
    "metadata": "metadata",
    "pre_running_deadline_seconds": "preRunningDeadlineSeconds",
    "ray_cluster_spec": "rayClusterSpec",
    "runtime_env_yaml": "runtimeEnvYAML",
    "shutdown_after_job_finishes": "shutdownAfterJobFinishes",
    "submission_mode": "submissionMode",
    "submitter_config": "submitterConfig",
    "submitter_pod_template": "submitterPodTemplate",
    "suspend": "suspend",
    "ttl_seconds_after_finished": "ttlSecondsAfterFinished",
}

RAYCLUSTER_SPEC_FIELDS: dict[str, str] = {
    "auth_options": "authOptions",
    "autoscaler_options": "autoscalerOptions",
    "enable_in_tree_autoscaling": "enableInTreeAutoscaling",
    "gcs_fault_tolerance_options": "gcsFaultToleranceOptions",
    "head_group_spec": "headGroupSpec",
    "head_service_annotations": "headServiceAnnotations",
    "history_server_options": "historyServerOptions",
    "managed_by": "managedBy",
    "network_policy": "networkPolicy",
    "ray_version": "rayVersion",
    "suspend": "suspend",
    "tls_options": "tlsOptions",
    "upgrade_strategy": "upgradeStrategy",
    "worker_group_specs": "workerGroupSpecs",
}

RAYSERVICE_SPEC_FIELDS: dict[str, str] = {
    "deployment_unhealthy_second_threshold": "deploymentUnhealthySecondThreshold",
    "exclude_head_pod_from_serve_svc": "excludeHeadPodFromServeSvc",
    "managed_by": "managedBy",
    "ray_cluster_config": "rayClusterConfig",
    "ray_cluster_deletion_delay_seconds": "rayClusterDeletionDelaySeconds",
    "serve_config_v2": "serveConfigV2",
    "serve_service": "serveService",
    "service_unhealthy_second_threshold": "serviceUnhealthySecondThreshold",
    "suspend": "suspend",
    "upgrade_strategy": "upgradeStrategy",
}

SPEC_FIELDS: dict[str, dict[str, str]] = {
    RAYJOB.kind: RAYJOB_SPEC_FIELDS,
    RAYCLUSTER.kind: RAYCLUSTER_SPEC_FIELDS,
    RAYSERVICE.kind: RAYSERVICE_SPEC_FIELDS,
}


def build_manifest(
    kind: RayKind,
    name: str | None = None,
    namespace: str | None = None,
    *,
    generate_name: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    base: Mapping[str, Any] | None = None,
    **spec_params: Any,
) -> dict[str, Any]:
    """A ray.io/v1 manifest of ``kind``; keywords override ``base`` (a manifest dict) field by field.

    Unknown keywords are refused at once, naming the ones KubeRay has, so a typo never turns into a
    silently missing field.
    """
    fields = SPEC_FIELDS[kind.kind]
    unknown = sorted(set(spec_params) - set(fields) - _CONVENIENCES.get(kind.kind, set()))
    if unknown:
        raise ArgumentError(
            f"unknown {kind.kind} spec parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
        )
    manifest: dict[str, Any] = copy.deepcopy(dict(base)) if base else {}
    manifest["apiVersion"] = kind.api_version
    manifest["kind"] = kind.kind
    metadata = manifest.setdefault("metadata", {})
    if name:
        metadata["name"] = name
    if generate_name:
        metadata["generateName"] = generate_name
    if namespace:
        metadata["namespace"] = namespace
    if labels:
        metadata.setdefault("labels", {}).update(labels)
    if annotations:
        metadata.setdefault("annotations", {}).update(annotations)
    spec = manifest.setdefault("spec", {})
    for keyword, value in _apply_conveniences(kind, spec_params).items():
        if value is not None:
            spec[fields[keyword]] = value
    return manifest


_CONVENIENCES = {RAYJOB.kind: {"runtime_env"}, RAYSERVICE.kind: {"serve_config"}}


def _apply_conveniences(kind: RayKind, params: dict[str, Any]) -> dict[str, Any]:
    params = dict(params)
    if kind is RAYJOB:
        runtime_env = params.pop("runtime_env", None)
        if runtime_env is not None:
            if params.get("runtime_env_yaml") is not None:
                raise ArgumentError("give runtime_env or runtime_env_yaml, not both")
            params["runtime_env_yaml"] = runtime_env_to_yaml(runtime_env)
        resources = params.get("entrypoint_resources")
        if isinstance(resources, Mapping):
            params["entrypoint_resources"] = json.dumps(dict(resources), sort_keys=True)
    if kind is RAYSERVICE:
        serve_config = params.pop("serve_config", None)
        if serve_config is not None:
            if params.get("serve_config_v2") is not None:
                raise ArgumentError("give serve_config or serve_config_v2, not both")
            params["serve_config_v2"] = yaml.safe_dump(serve_config, sort_keys=False)
    return params


def runtime_env_to_yaml(runtime_env: Mapping[str, Any] | str) -> str:
    """KubeRay takes the runtime environment as a YAML string (``runtimeEnvYAML``)."""
    if isinstance(runtime_env, str):
        return runtime_env
    if not isinstance(runtime_env, Mapping):
        raise ConfigurationError(
            f"runtime_env must be a mapping such as {{'pip': ['numpy']}} or its YAML text, "
            f"not a {type(runtime_env).__name__}"
        )
    return yaml.safe_dump(dict(runtime_env), sort_keys=False)


def runtime_env_from_yaml(runtime_env_yaml: str | None) -> dict[str, Any]:
    try:
        parsed = yaml.safe_load(runtime_env_yaml or "") or {}
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"runtimeEnvYAML is not valid YAML: {exc}") from exc
    if not isinstance(parsed, dict):
        raise ConfigurationError('runtimeEnvYAML must hold a mapping such as "pip: [numpy]"')
    return parsed


def spec_params(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword parameters that rebuild ``manifest``'s spec (the inverse of build_manifest)."""
    fields = SPEC_FIELDS[manifest["kind"]]
    by_field = {field: keyword for keyword, field in fields.items()}
    spec = manifest.get("spec") or {}
    unknown = sorted(set(spec) - set(by_field))
    if unknown:
        raise KeyError(f"{manifest['kind']} spec has fields this KubeRay version does not know: {unknown}")
    return {by_field[field]: copy.deepcopy(value) for field, value in spec.items()}


def rayjob(name: str | None = None, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """A RayJob manifest, e.g. ``rayjob("nightly", entrypoint="python run.py", ray_cluster_spec=...)``."""
    return build_manifest(RAYJOB, name, namespace, **kwargs)


def raycluster(name: str | None = None, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return build_manifest(RAYCLUSTER, name, namespace, **kwargs)


def rayservice(name: str | None = None, namespace: str | None = None, **kwargs: Any) -> dict[str, Any]:
    return build_manifest(RAYSERVICE, name, namespace, **kwargs)


def simple_cluster_spec(
    *,
    image: str,
    ray_version: str | None = None,
    head_cpu: str = "1",
    head_memory: str = "2Gi",
    workers: int = 0,
    worker_cpu: str = "1",
    worker_memory: str = "2Gi",
    worker_group: str = "workers",
    min_workers: int | None = None,
    max_workers: int | None = None,
    ray_start_params: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A small, valid ``rayClusterSpec`` for the common case: one head, one worker group.

    Anything beyond this shape is written as a dict (or YAML file) in KubeRay's own terms.
    """
    spec: dict[str, Any] = {
        "headGroupSpec": {
            "rayStartParams": dict(ray_start_params or {}),
            "template": _pod_template("ray-head", image, head_cpu, head_memory, head=True),
        }
    }
    if ray_version:
        spec["rayVersion"] = ray_version
    if workers or max_workers:
        spec["workerGroupSpecs"] = [
            {
                "groupName": worker_group,
                "replicas": workers,
                "minReplicas": workers if min_workers is None else min_workers,
                "maxReplicas": max(workers, max_workers or workers),
                "rayStartParams": {},
                "template": _pod_template("ray-worker", image, worker_cpu, worker_memory, head=False),
            }
        ]
    return spec


def _pod_template(container: str, image: str, cpu: str, memory: str, *, head: bool) -> dict[str, Any]:
    resources = {"cpu": cpu, "memory": memory}
    body: dict[str, Any] = {
        "name": container,
        "image": image,
        "resources": {"limits": resources, "requests": resources},
    }
    if head:
        body["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            # A RayService's serve Service takes the head's "serve" port (KubeRay BuildServeService).
            {"containerPort": 8000, "name": "serve"},
        ]
    return {"spec": {"containers": [body]}}
