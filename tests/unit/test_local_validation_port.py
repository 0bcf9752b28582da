"""The emulated operator's own port of KubeRay v1.7.0 utils/validation.go: every rule with Go's exact message,
KubeRay's samples accepted, the provider's stricter rules not leaking into it, and the RayCluster reconcile."""

from __future__ import annotations

import ast
import asyncio
import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

import kuberay_provider.local.controller as controller_pkg
from kuberay_provider.core.validation.rules import raycluster_rules, rayjob_rules
from kuberay_provider.local.apiserver.schema import SchemaChecker
from kuberay_provider.local.controller import HttpClusterAPI
from kuberay_provider.local.controller.api import EVENTS, PODS, RAYCLUSTERS, RAYJOBS
from kuberay_provider.local.controller.validation import (
    unmarshal_runtime_env_yaml,
    validate_rayjob,
    validate_rayservice,
)
from kuberay_provider.local.controller.validation_cluster import check_raycluster
from kuberay_provider.local.controller.validation_common import FEATURE_GATES
from kuberay_provider.local.controller.validation_service import check_rayservice
from kuberay_provider.local.plane import LocalControlPlane
from kuberay_provider.local.ray_backend import FakeRayBackend
from tests.conftest import CRDS_DIR, SAMPLES_DIR

from .test_local_controller import NS, Harness

DELETE = object()
CONTAINER = [{"name": "ray", "image": "rayproject/ray:2.60.0"}]
DNS1035 = ("[a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic "
           "character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for "
           "validation is '[a-z]([-a-z0-9]*[a-z0-9])?')]")  # fmt: skip
LABEL_NAME = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
              "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
              "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")  # fmt: skip
LABEL_VALUE = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
               "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
               "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")  # fmt: skip
V2 = {"enableInTreeAutoscaling": True, "autoscalerOptions": {"version": "v2"}}
FT = {"~.gcsFaultToleranceOptions": {"redisAddress": "redis:6379"}}
RULES = {"deletionRules": [{"policy": "DeleteWorkers", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 20}},
                           {"policy": "DeleteCluster", "condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 10}}]}  # fmt: skip
SELECTOR = {"ray.io/cluster": "existing"}
INC = {"~.enableInTreeAutoscaling": True, "spec.upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
    "maxSurgePercent": 50, "stepSizePercent": 25, "intervalSeconds": 10, "gatewayClassName": "istio"}}}  # fmt: skip


def cluster_spec() -> dict[str, Any]:
    """A RayClusterSpec as the API server hands it over (CRD defaults applied)."""
    worker = {"groupName": "small-group", "replicas": 1, "minReplicas": 0, "maxReplicas": 5, "numOfHosts": 1,
              "rayStartParams": {}, "template": {"spec": {"containers": copy.deepcopy(CONTAINER)}}}  # fmt: skip
    head = {"rayStartParams": {}, "template": {"spec": {"containers": copy.deepcopy(CONTAINER)}}}
    return {"rayVersion": "2.60.0", "headGroupSpec": head, "workerGroupSpecs": [worker]}


def obj(kind: str, name: str = "sample") -> dict[str, Any]:
    spec: dict[str, Any] = {
        "RayJob": {
            "entrypoint": "python x.py",
            "submissionMode": "K8sJobMode",
            "ttlSecondsAfterFinished": 0,
            "backoffLimit": 0,
            "rayClusterSpec": cluster_spec(),
        },
        "RayCluster": cluster_spec(),
        "RayService": {"rayClusterConfig": cluster_spec()},
    }[kind]
    return {"apiVersion": "ray.io/v1", "kind": kind, "metadata": {"name": name, "namespace": NS}, "spec": spec}


def mutate(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Set dotted paths (``~`` stands for the kind's cluster spec; digits index lists; DELETE removes)."""
    body = copy.deepcopy(body)
    at = {"RayJob": "spec.rayClusterSpec", "RayCluster": "spec", "RayService": "spec.rayClusterConfig"}[body["kind"]]
    for path, value in changes.items():
        *parents, last = path.replace("~", at).split(".")
        node: Any = body
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[int(last) if last.isdigit() else last] = copy.deepcopy(value)
    return body


def error_of(body: dict[str, Any]) -> str | None:
    """The message the port gives for ``body`` (RayJob, RayCluster or RayService)."""
    if body["kind"] == "RayService":
        return validate_rayservice(body)
    failure = validate_rayjob(body) if body["kind"] == "RayJob" else check_raycluster(body)
    return failure.message if failure else None


W, H = "~.workerGroupSpecs.0", "~.headGroupSpec"
HENV = f"{H}.template.spec.containers.0.env"
INV = "The RayJob spec is invalid: "
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    # ValidateRayJobMetadata / ValidateRayJobStatus
    ("job-name-long", "RayJob", {"metadata.name": "j" * 48}, "The RayJob metadata is invalid: RayJob name should be no more than 47 characters"),
    ("job-name-dns", "RayJob", {"metadata.name": "Job"}, f"The RayJob metadata is invalid: RayJob name should be a valid DNS1035 label: {DNS1035}"),
    ("job-waiting", "RayJob", {"status": {"jobDeploymentStatus": "Waiting"}}, "The RayJob status is invalid: JobDeploymentStatus cannot be `Waiting` when SubmissionMode is not InteractiveMode"),
    # ValidateRayJobSpec, in its order
    ("suspend-no-shutdown", "RayJob", {"spec.suspend": True, "spec.rayClusterSpec": DELETE}, INV + "a RayJob with shutdownAfterJobFinishes set to false is not allowed to be suspended"),
    ("ttl-negative", "RayJob", {"spec.ttlSecondsAfterFinished": -1}, INV + "TTLSecondsAfterFinished must be a non-negative integer"),
    ("ttl-no-shutdown", "RayJob", {"spec.ttlSecondsAfterFinished": 5}, INV + "a RayJob with shutdownAfterJobFinishes set to false cannot have TTLSecondsAfterFinished"),
    ("rules-and-shutdown", "RayJob", {"spec.shutdownAfterJobFinishes": True, "spec.deletionStrategy": RULES}, INV + "spec.shutdownAfterJobFinishes and spec.deletionStrategy.deletionRules are mutually exclusive"),
    ("rules-and-legacy", "RayJob", {"spec.deletionStrategy": {**RULES, "onSuccess": {"policy": "DeleteSelf"}}}, INV + "Cannot use both legacy onSuccess/onFailure fields and deletionRules simultaneously"),
    ("strategy-empty", "RayJob", {"spec.deletionStrategy": {}}, INV + "DeletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)"),
    ("legacy-half", "RayJob", {"spec.deletionStrategy": {"onSuccess": {"policy": "DeleteSelf"}}}, "both DeletionStrategy.OnSuccess and DeletionStrategy.OnFailure must be set when using the legacy deletion policy fields of DeletionStrategy"),
    ("legacy-success-unset", "RayJob", {"spec.deletionStrategy": {"onSuccess": {}, "onFailure": {}}}, "the DeletionPolicyType field of DeletionStrategy.OnSuccess cannot be unset when DeletionStrategy is enabled"),
    ("legacy-failure-unset", "RayJob", {"spec.deletionStrategy": {"onSuccess": {"policy": "DeleteSelf"}, "onFailure": {}}}, "the DeletionPolicyType field of DeletionStrategy.OnFailure cannot be unset when DeletionStrategy is enabled"),
    ("legacy-selector-success", "RayJob", {"spec.clusterSelector": SELECTOR, "spec.deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteSelf"}}}, "the ClusterSelector mode doesn't support DeletionStrategy=DeleteCluster on success"),
    ("legacy-selector-failure", "RayJob", {"spec.clusterSelector": SELECTOR, "spec.deletionStrategy": {"onSuccess": {"policy": "DeleteSelf"}, "onFailure": {"policy": "DeleteWorkers"}}}, "the ClusterSelector mode doesn't support DeletionStrategy=DeleteWorkers on failure"),
    ("legacy-workers-autoscaling", "RayJob", {"~.enableInTreeAutoscaling": True, "spec.deletionStrategy": {"onSuccess": {"policy": "DeleteWorkers"}, "onFailure": {"policy": "DeleteSelf"}}}, "DeletionStrategy=DeleteWorkers currently does not support RayCluster with autoscaling enabled"),
    ("legacy-none-shutdown", "RayJob", {"spec.shutdownAfterJobFinishes": True, "spec.deletionStrategy": {"onSuccess": {"policy": "DeleteNone"}, "onFailure": {"policy": "DeleteSelf"}}}, INV + "shutdownAfterJobFinshes is set to 'true' while deletion policy is 'DeleteNone'"),
    ("rule-both-statuses", "RayJob", {"spec.deletionStrategy": {"deletionRules": [{"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}}]}}, "deletionRules[0]: cannot set both JobStatus and JobDeploymentStatus at the same time"),
    ("rule-no-status", "RayJob", {"spec.deletionStrategy": {"deletionRules": [{"policy": "DeleteSelf", "condition": {}}]}}, "deletionRules[0]: exactly one of JobStatus and JobDeploymentStatus must be set"),
    ("rule-negative-ttl", "RayJob", {"spec.deletionStrategy": {"deletionRules": [{"policy": "DeleteSelf", "condition": {"jobStatus": "FAILED", "ttlSeconds": -1}}]}}, "deletionRules[0]: TTLSeconds must be non-negative"),
    ("rule-selector", "RayJob", {"spec.clusterSelector": SELECTOR, "spec.deletionStrategy": {"deletionRules": [{"policy": "DeleteCluster", "condition": {"jobStatus": "FAILED"}}]}}, "deletionRules[0]: DeletionPolicyType 'DeleteCluster' not supported when ClusterSelector is set"),
    ("rule-workers-autoscaling", "RayJob", {"~.enableInTreeAutoscaling": True, "spec.deletionStrategy": {"deletionRules": [{"policy": "DeleteWorkers", "condition": {"jobStatus": "FAILED"}}]}}, "deletionRules[0]: DeletionPolicyType 'DeleteWorkers' not supported with autoscaling enabled"),
    ("rule-duplicate", "RayJob", {"spec.deletionStrategy": {"deletionRules": [RULES["deletionRules"][1]] * 2}}, "deletionRules[1]: duplicate rule for DeletionPolicyType 'DeleteCluster' and JobStatus 'SUCCEEDED'"),
    ("rule-ttl-order", "RayJob", {"spec.deletionStrategy": RULES}, "for JobStatus 'SUCCEEDED': DeleteCluster TTL (10) must be >= DeleteWorkers TTL (20)"),
    ("rules-joined", "RayJob", {"spec.deletionStrategy": {"deletionRules": [{"policy": "DeleteSelf", "condition": {}}, *RULES["deletionRules"]]}}, "deletionRules[0]: exactly one of JobStatus and JobDeploymentStatus must be set\nfor JobStatus 'SUCCEEDED': DeleteCluster TTL (10) must be >= DeleteWorkers TTL (20)"),
    ("selector-suspend", "RayJob", {"spec.shutdownAfterJobFinishes": True, "spec.suspend": True, "spec.clusterSelector": SELECTOR}, INV + "the ClusterSelector mode doesn't support the suspend operation"),
    ("no-cluster", "RayJob", {"spec.rayClusterSpec": DELETE}, INV + "one of RayClusterSpec or ClusterSelector must be set"),
    ("selector-no-name", "RayJob", {"spec.clusterSelector": {"team": "a"}}, "cluster name in ClusterSelector should not be empty"),
    ("selector-sidecar", "RayJob", {"spec.clusterSelector": SELECTOR, "spec.submissionMode": "SidecarMode"}, "ClusterSelector is not supported in SidecarMode"),
    ("selector-backoff", "RayJob", {"spec.clusterSelector": SELECTOR, "spec.backoffLimit": 1}, INV + "BackoffLimit is incompatible with ClusterSelector mode"),
    ("interactive-backoff", "RayJob", {"spec.submissionMode": "InteractiveMode", "spec.backoffLimit": 2}, INV + "BackoffLimit is incompatible with InteractiveMode"),
    ("sidecar-pod-template", "RayJob", {"spec.submissionMode": "SidecarMode", "spec.submitterPodTemplate": {}}, "Currently, SidecarMode doesn't support SubmitterPodTemplate"),
    ("sidecar-config", "RayJob", {"spec.submissionMode": "SidecarMode", "spec.submitterConfig": {}}, "Currently, SidecarMode doesn't support SubmitterConfig"),
    ("sidecar-restart", "RayJob", {"spec.submissionMode": "SidecarMode", f"{H}.template.spec.restartPolicy": "Always"}, "restartPolicy for head Pod should be Never or unset when using SidecarMode"),
    ("job-k8s-auth", "RayJob", {"~.authOptions": {"mode": "token", "enableK8sTokenAuth": True}}, INV + "K8s token auth mode is currently not supported for RayJob"),
    ("job-cluster-spec", "RayJob", {f"{W}.minReplicas": 6}, INV + "worker group small-group has minReplicas 6 greater than maxReplicas 5"),
    ("runtime-env-list", "RayJob", {"spec.runtimeEnvYAML": "- pip"}, "failed to unmarshal RuntimeEnvYAML: - pip: error unmarshaling JSON: while decoding JSON: json: cannot unmarshal array into Go value of type types.RuntimeEnvType"),
    ("active-deadline", "RayJob", {"spec.activeDeadlineSeconds": 0}, INV + "activeDeadlineSeconds must be a positive integer"),
    ("pre-running-deadline", "RayJob", {"spec.preRunningDeadlineSeconds": -3}, INV + "preRunningDeadlineSeconds must be a positive integer"),
    ("backoff-negative", "RayJob", {"spec.backoffLimit": -1}, INV + "backoffLimit must be a positive integer"),
    # ValidateRayClusterMetadata / UpgradeOptions / Status
    ("cluster-name-long", "RayCluster", {"metadata.name": "c" * 54}, "RayCluster name should be no more than 53 characters"),
    ("cluster-name-dns", "RayCluster", {"metadata.name": "1c"}, f"RayCluster name should be a valid DNS1035 label: {DNS1035}"),
    ("upgrade-type", "RayCluster", {"spec.upgradeStrategy": {"type": "Rolling"}}, "The RayCluster spec is invalid: Spec.UpgradeStrategy.Type value Rolling is invalid, valid options are Recreate or None"),
    ("upgrade-owned", "RayCluster", {"spec.upgradeStrategy": {"type": "Recreate"}, "metadata.labels": {"ray.io/originated-from-crd": "RayService"}}, "upgradeStrategy cannot be set when RayCluster is created by RayService"),
    ("status-both", "RayCluster", {"status": {"conditions": [{"type": "RayClusterSuspending", "status": "True"}, {"type": "RayClusterSuspended", "status": "True"}]}}, "invalid RayCluster State: rayv1.RayClusterSuspending and rayv1.RayClusterSuspended conditions should not be both true"),
    # ValidateRayClusterSpec, in its order
    ("head-containers", "RayCluster", {f"{H}.template.spec.containers": []}, "headGroupSpec should have at least one container"),
    ("head-resources", "RayCluster", {f"{H}.rayStartParams": {"num-cpus": "1"}, f"{H}.resources": {"CPU": "1"}}, "resource fields should not be set in both rayStartParams and Resources for Head group; please use only one"),
    ("head-params-labels", "RayCluster", {f"{H}.rayStartParams": {"labels": ""}}, "rayStartParams['labels'] is not supported for Head group; please use the top-level Labels field instead"),
    ("head-label-key", "RayCluster", {f"{H}.labels": {"bad key": "ok"}}, f"invalid label key for Head group: 'bad key', error: {LABEL_NAME}"),
    ("worker-label-value", "RayCluster", {f"{W}.labels": {"zone": "-x"}}, f"invalid label value for key 'zone' in small-group group: '-x', error: {LABEL_VALUE}"),
    ("worker-containers", "RayCluster", {f"{W}.template.spec.containers": []}, "workerGroupSpec should have at least one container"),
    ("replicas-unset", "RayCluster", {f"{W}.maxReplicas": DELETE}, "worker group small-group must set both minReplicas and maxReplicas when autoscaling is disabled"),
    ("min-negative", "RayCluster", {f"{W}.minReplicas": -1}, "worker group small-group has negative minReplicas -1"),
    ("max-negative", "RayCluster", {f"{W}.minReplicas": DELETE, "~.enableInTreeAutoscaling": True, f"{W}.maxReplicas": -2}, "worker group small-group has negative maxReplicas -2"),
    ("worker-resources", "RayCluster", {f"{W}.rayStartParams": {"resources": '{"a": 1}'}, f"{W}.resources": {"a": "1"}}, "resource fields should not be set in both rayStartParams and Resources for small-group group; please use only one"),
    ("idle-negative", "RayCluster", {f"{W}.idleTimeoutSeconds": -1}, "worker group small-group: idleTimeoutSeconds must be non-negative, got -1"),
    ("idle-no-v2", "RayCluster", {f"{W}.idleTimeoutSeconds": 60}, "worker group small-group: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. Please set .spec.autoscalerOptions.version to 'v2' (or set RAY_enable_autoscaler_v2 environment variable to 'true' in the head pod if using KubeRay < 1.4.0)"),
    ("priority-no-version", "RayCluster", {"~.rayVersion": DELETE, f"{W}.priority": 5}, "worker group small-group: priority is set, but RayVersion was not specified. Ray version 2.56.0 or later is required"),
    ("priority-bad-version", "RayCluster", {"~.rayVersion": "latest", f"{W}.priority": 5}, 'worker group small-group: priority is set, but RayVersion format is invalid: latest, could not parse "latest" as version'),
    ("priority-old-version", "RayCluster", {"~.rayVersion": "2.55.1", f"{W}.priority": 5}, "worker group small-group: priority is set, but minimum Ray version is 2.56.0, got 2.55.1"),
    ("priority-no-v2", "RayCluster", {f"{W}.priority": 5}, "worker group small-group: priority is set to 5, but autoscaler v2 is not enabled. Priority is only supported with autoscaler v2 enabled"),
    ("ft-annotation-and-options", "RayCluster", {**FT, "metadata.annotations": {"ray.io/ft-enabled": "false"}}, "ray.io/ft-enabled annotation and GcsFaultToleranceOptions are both set. Please use only GcsFaultToleranceOptions to configure GCS fault tolerance"),
    ("redis-address-implicit", "RayCluster", {HENV: [{"name": "RAY_REDIS_ADDRESS", "value": "r:6379"}]}, "RAY_REDIS_ADDRESS is set which implicitly enables GCS fault tolerance, but GcsFaultToleranceOptions is not set. Please set GcsFaultToleranceOptions to enable GCS fault tolerance"),
    ("ft-redis-password-param", "RayCluster", {**FT, f"{H}.rayStartParams": {"redis-password": "x"}}, "cannot set `redis-password` in rayStartParams when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead"),
    ("ft-redis-password-env", "RayCluster", {**FT, HENV: [{"name": "REDIS_PASSWORD", "value": "x"}]}, "cannot set `REDIS_PASSWORD` env var in head Pod when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisPassword instead"),
    ("ft-redis-address-env", "RayCluster", {**FT, HENV: [{"name": "RAY_REDIS_ADDRESS", "value": "x"}]}, "cannot set `RAY_REDIS_ADDRESS` env var in head Pod when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.RedisAddress instead"),
    ("ft-storage-namespace", "RayCluster", {**FT, "metadata.annotations": {"ray.io/external-storage-namespace": "ns"}}, "cannot set `ray.io/external-storage-namespace` annotation when GcsFaultToleranceOptions is enabled - use GcsFaultToleranceOptions.ExternalStorageNamespace instead"),
    ("ft-rocksdb-gate", "RayCluster", {"~.gcsFaultToleranceOptions": {"backend": "rocksdb"}}, "the embedded RocksDB GCS fault tolerance backend (GcsFaultToleranceOptions.Backend: 'rocksdb') requires the GCSFaultToleranceEmbeddedStorage feature gate to be enabled"),
    ("ft-redis-storage", "RayCluster", {"~.gcsFaultToleranceOptions": {"redisAddress": "r", "storage": {}}}, "cannot set GcsFaultToleranceOptions.Storage when backend is 'redis' - it only applies to the 'rocksdb' backend"),
    ("redis-username", "RayCluster", {HENV: [{"name": "REDIS_USERNAME", "value": "u"}]}, "cannot set redis username in rayStartParams or environment variables - use GcsFaultToleranceOptions.RedisUsername instead"),
    ("v2-env-no-autoscaling", "RayCluster", {HENV: [{"name": "RAY_enable_autoscaler_v2", "value": "1"}]}, "environment variable RAY_enable_autoscaler_v2 cannot be set to '1' when enableInTreeAutoscaling is false. Please set enableInTreeAutoscaling: true to use autoscaler v2"),
    ("suspend-autoscaling", "RayCluster", {"~.enableInTreeAutoscaling": True, f"{W}.suspend": True}, "worker group small-group cannot be suspended with Autoscaler enabled"),
    ("version-and-env", "RayCluster", {**{f"~.{k}": v for k, v in V2.items()}, HENV: [{"name": "RAY_enable_autoscaler_v2", "value": "0"}]}, "both .spec.autoscalerOptions.version and head Pod env var RAY_enable_autoscaler_v2 are set, please only use the former"),
    ("v2-head-restart", "RayCluster", {**{f"~.{k}": v for k, v in V2.items()}, f"{H}.template.spec.restartPolicy": "Always"}, "restartPolicy for head Pod should be Never or unset when using autoscaler V2"),
    ("v2-worker-restart", "RayCluster", {**{f"~.{k}": v for k, v in V2.items()}, f"{W}.template.spec.restartPolicy": "OnFailure"}, "restartPolicy for worker group small-group should be Never or unset when using autoscaler V2"),
    ("autoscaler-idle", "RayCluster", {"~.autoscalerOptions": {"idleTimeoutSeconds": -5}}, "autoscalerOptions.idleTimeoutSeconds must be non-negative, got -5"),
    ("autoscaler-env", "RayCluster", {"~.autoscalerOptions": {"env": [{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "x"}]}}, "autoscalerOptions.env must not contain KUBERAY_GEN_AUTOSCALER_START_CMD: it is managed by KubeRay and injected automatically into the autoscaler container"),
    ("history-gate", "RayCluster", {"~.historyServerOptions": {}}, "RayClusterHistoryServer feature gate is not enabled"),
    ("auth-no-version", "RayCluster", {"~.rayVersion": DELETE, "~.authOptions": {"mode": "token"}}, "authOptions.mode is 'token' but RayVersion was not specified. Ray version 2.52.0 or later is required"),
    ("auth-bad-version", "RayCluster", {"~.rayVersion": "02.52.0", "~.authOptions": {"mode": "token"}}, 'authOptions.mode is \'token\' but RayVersion format is invalid: 02.52.0, illegal zero-prefixed version component "02" in "02.52.0"'),
    ("auth-old-version", "RayCluster", {"~.rayVersion": "2.51", "~.authOptions": {"mode": "token"}}, "authOptions.mode is 'token' but minimum Ray version is 2.52.0, got 2.51"),
    ("k8s-auth-old-version", "RayCluster", {"~.rayVersion": "2.54.0", "~.authOptions": {"mode": "token", "enableK8sTokenAuth": True}}, "authOptions.enableK8sTokenAuth is enabled but minimum Ray version is 2.55.0, got 2.54.0"),
    ("k8s-auth-secret", "RayCluster", {"~.authOptions": {"mode": "token", "enableK8sTokenAuth": True, "secretName": "s"}}, "authOptions.enableK8sTokenAuth is enabled and authOptions.secretName is also set"),
    ("k8s-auth-no-token", "RayCluster", {"~.authOptions": {"enableK8sTokenAuth": True}}, "authOptions.enableK8sTokenAuth is enabled but authOptions.mode not set to 'token'"),
    ("network-policy-gate", "RayCluster", {"~.networkPolicy": {}}, "spec.networkPolicy requires the RayClusterNetworkPolicy feature gate to be enabled"),
    ("tls-gate", "RayCluster", {"~.tlsOptions": {"enabled": True}}, "spec.tlsOptions requires the RayClusterMTLS feature gate to be enabled"),
    # ValidateRayServiceMetadata / ValidateRayServiceSpec / ValidateClusterUpgradeOptions
    ("service-name-long", "RayService", {"metadata.name": "s" * 48}, "The RayService metadata is invalid: RayService name should be no more than 47 characters"),
    ("service-name-dns", "RayService", {"metadata.name": "svc_1"}, f"The RayService metadata is invalid: RayService name should be a valid DNS1035 label: {DNS1035}"),
    ("timeout-zero-duration", "RayService", {"metadata.annotations": {"ray.io/initializing-timeout": "0.5ns"}}, "The RayService metadata is invalid: RayService annotations is invalid: annotation ray.io/initializing-timeout must be a positive duration, got: 0.5ns"),
    ("timeout-negative-seconds", "RayService", {"metadata.annotations": {"ray.io/initializing-timeout": "-30"}}, "The RayService metadata is invalid: RayService annotations is invalid: annotation ray.io/initializing-timeout must be a positive integer (seconds), got: -30"),
    ("timeout-format", "RayService", {"metadata.annotations": {"ray.io/initializing-timeout": "99999999999h"}}, "The RayService metadata is invalid: RayService annotations is invalid: annotation ray.io/initializing-timeout has invalid format: 99999999999h. Expected Go duration format (e.g., '5m', '1h') or positive integer seconds"),
    ("service-k8s-auth", "RayService", {"~.authOptions": {"enableK8sTokenAuth": True}}, "The RayService spec is invalid: K8s token auth mode is currently not supported for RayService"),
    ("service-cluster-spec", "RayService", {f"{H}.template.spec.containers": []}, "The RayService spec is invalid: headGroupSpec should have at least one container"),
    ("service-head-svc-name", "RayService", {f"{H}.headService": {"metadata": {"name": "mine"}}}, "The RayService spec is invalid: spec.rayClusterConfig.headGroupSpec.headService.metadata.name should not be set"),
    ("service-upgrade-type", "RayService", {"spec.upgradeStrategy": {"type": "Recreate"}}, "The RayService spec is invalid: Spec.UpgradeStrategy.Type value Recreate is invalid, valid options are NewClusterWithIncrementalUpgrade, NewCluster, or None"),
    ("service-deletion-delay", "RayService", {"spec.rayClusterDeletionDelaySeconds": -1}, "The RayService spec is invalid: Spec.RayClusterDeletionDelaySeconds should be a non-negative integer, got -1"),
    # ValidateClusterUpgradeOptions (NewClusterWithIncrementalUpgrade)
    ("inc-autoscaler", "RayService", {**INC, "~.enableInTreeAutoscaling": False}, "The RayService spec is invalid: Ray Autoscaler is required for NewClusterWithIncrementalUpgrade"),
    ("inc-options", "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions": DELETE}, "The RayService spec is invalid: ClusterUpgradeOptions are required for NewClusterWithIncrementalUpgrade"),
    ("inc-max-surge", "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions.maxSurgePercent": 101}, "The RayService spec is invalid: maxSurgePercent must be between 0 and 100"),
    ("inc-step-unset", "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions.stepSizePercent": DELETE}, "The RayService spec is invalid: stepSizePercent must be between 0 and 100"),
    ("inc-step-above-surge", "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions.stepSizePercent": 60}, "The RayService spec is invalid: stepSizePercent must be less than or equal to maxSurgePercent"),
    ("inc-interval", "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions.intervalSeconds": 0}, "The RayService spec is invalid: intervalSeconds must be greater than 0"),
    ("inc-gateway", "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions.gatewayClassName": ""}, "The RayService spec is invalid: gatewayClassName is required for NewClusterWithIncrementalUpgrade"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "changes", "message"), [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_each_rule_gives_gos_message(kind: str, changes: dict[str, Any], message: str) -> None:
    assert error_of(obj(kind)) is None, "the base object must be valid"
    assert error_of(mutate(obj(kind), changes)) == message


ROCKSDB = {"backend": "rocksdb"}
HISTORY = "~.historyServerOptions"
GCS_COLLECTOR = {
    "image": "collector:1",
    "env": [{"name": "STORAGE_BACKEND", "value": "gcs"}, {"name": "GCS_BUCKET", "value": "b"}],
}
GATED = [  # (gate, value, kind, changes, message): the code behind the gates, reached by flipping them
    ("GCSFaultToleranceEmbeddedStorage", True, "RayCluster", {"~.gcsFaultToleranceOptions": {**ROCKSDB, "redisAddress": "r"}}, "cannot set GcsFaultToleranceOptions.RedisAddress when backend is 'rocksdb'"),
    ("GCSFaultToleranceEmbeddedStorage", True, "RayCluster", {"~.gcsFaultToleranceOptions": {**ROCKSDB, "storage": {"claimName": "pvc", "size": "1Gi"}}}, "GcsFaultToleranceOptions.Storage.ClaimName is mutually exclusive with size, storageClassName, and accessModes"),
    ("GCSFaultToleranceEmbeddedStorage", True, "RayCluster", {"~.gcsFaultToleranceOptions": ROCKSDB, HENV: [{"name": "RAY_gcs_storage_path", "value": "/x"}]}, "cannot set `RAY_gcs_storage` or `RAY_gcs_storage_path` env var in head Pod when the embedded GCS FT backend is used - these are managed by KubeRay"),
    ("GCSFaultToleranceEmbeddedStorage", True, "RayCluster", {"~.gcsFaultToleranceOptions": ROCKSDB, f"{H}.template.spec.volumes": [{"name": "gcs-storage"}]}, 'cannot set a volume named "gcs-storage" in the head Pod when the embedded GCS FT backend is used - it is managed by KubeRay'),
    ("RayJobDeletionPolicy", False, "RayCluster", {f"{W}.suspend": True}, "worker group small-group can be suspended only when the RayJobDeletionPolicy feature gate is enabled"),
    ("RayJobDeletionPolicy", False, "RayJob", {"spec.deletionStrategy": {}}, "RayJobDeletionPolicy feature gate must be enabled to use DeletionStrategy"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {}}, "historyServerOptions.collectorOptions must be set"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {"collectorOptions": {}}}, "historyServerOptions.collectorOptions.image must be set"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {"collectorOptions": {"image": "c", "env": [{"name": "POD_IP"}]}}}, "historyServerOptions.collectorOptions.env must not contain POD_IP: it is managed by KubeRay and injected automatically into the collector container"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {"collectorOptions": {"image": "c"}}}, "STORAGE_BACKEND environment variable must be set with a literal string value in historyServerOptions.collectorOptions.env"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {"collectorOptions": {"image": "c", "env": [{"name": "STORAGE_BACKEND", "value": "s3"}]}}}, "S3_REGION environment variable must be set when STORAGE_BACKEND is S3"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {"collectorOptions": {"image": "c", "env": [{"name": "STORAGE_BACKEND", "value": "AzureBlob"}]}}}, "either AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_URL environment variable must be set when STORAGE_BACKEND is AZUREBLOB"),
    ("RayClusterHistoryServer", True, "RayCluster", {HISTORY: {"collectorOptions": GCS_COLLECTOR}, f"{H}.template.spec.containers.0.name": "ray-history-collector"}, "head pod template must not define a container with name 'ray-history-collector' when history server collector options are enabled"),
    ("RayClusterNetworkPolicy", True, "RayCluster", {"~.networkPolicy": {"mode": "DenyAllEgress", "head": {"ingressRules": [{}]}}}, 'networkPolicy.head.ingressRules cannot be set when mode is "DenyAllEgress" (ingress is not restricted)'),
    ("RayClusterNetworkPolicy", True, "RayCluster", {"~.networkPolicy": {"workerGroups": [{"groupName": "nope"}]}}, 'networkPolicy.workerGroups["nope"] does not match any group name in workerGroupSpecs'),
    ("RayClusterNetworkPolicy", True, "RayCluster", {"~.networkPolicy": {}, f"{W}.groupName": "Small"}, "worker group name \"Small\" must be a valid DNS1123 label when networkPolicy is enabled (it is embedded in the NetworkPolicy name): [a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')]"),
    ("RayServiceIncrementalUpgrade", False, "RayService", {**INC, "spec.upgradeStrategy.clusterUpgradeOptions": DELETE}, None),
    ("RayClusterMTLS", True, "RayCluster", {"~.tlsOptions": {"enabled": True}, HENV: [{"name": "RAY_USE_TLS", "value": "1"}]}, "cannot set RAY_USE_TLS environment variable in head Pod when tlsOptions is set - the operator manages TLS configuration automatically"),
    ("RayClusterMTLS", True, "RayCluster", {"~.tlsOptions": {"enabled": True}, f"{W}.template.spec.containers.0.volumeMounts": [{"name": "certs", "mountPath": "/etc/ray/tls"}]}, 'cannot use volume mount at path "/etc/ray/tls" in worker group "small-group" when tlsOptions is set - the operator manages TLS configuration automatically'),
]  # fmt: skip


@pytest.mark.parametrize(("gate", "value", "kind", "changes", "message"), GATED)
def test_gated_rules(
    monkeypatch: pytest.MonkeyPatch, gate: str, value: bool, kind: str, changes: dict[str, Any], message: str | None
) -> None:
    monkeypatch.setitem(FEATURE_GATES, gate, value)
    assert error_of(obj(kind)) is None
    assert error_of(mutate(obj(kind), changes)) == message


def test_feature_gates_have_v1_7_0_defaults() -> None:
    on = {"RayClusterStatusConditions", "RayJobDeletionPolicy", "RayMultiHostIndexing", "RayServiceIncrementalUpgrade"}
    assert {gate for gate, enabled in FEATURE_GATES.items() if enabled} == on and len(FEATURE_GATES) == 11


@pytest.mark.parametrize(
    ("kind", "changes", "reason"),
    [
        ("RayJob", {"metadata.name": "J", "spec.suspend": True}, "InvalidRayJobMetadata"),  # metadata before spec
        ("RayJob", {"spec.suspend": True, "status": {"jobDeploymentStatus": "Waiting"}}, "InvalidRayJobSpec"),
        ("RayJob", {"status": {"jobDeploymentStatus": "Waiting"}}, "InvalidRayJobStatus"),
        ("RayService", {"metadata.name": "S", "spec.rayClusterDeletionDelaySeconds": -1}, "InvalidRayServiceMetadata"),
        ("RayService", {"spec.rayClusterDeletionDelaySeconds": -1}, "InvalidRayServiceSpec"),
    ],
)
def test_event_reasons_follow_the_first_failing_check(kind: str, changes: dict[str, Any], reason: str) -> None:
    body = mutate(obj(kind), changes)
    failure = validate_rayjob(body) if kind == "RayJob" else check_rayservice(body)
    assert failure is not None and failure.event_reason == reason


def test_runtime_env_yaml_is_read_like_go_yaml() -> None:
    assert unmarshal_runtime_env_yaml("") is None and unmarshal_runtime_env_yaml("null") is None
    assert unmarshal_runtime_env_yaml("pip: [x]\n---\nnot: [parsed") is None  # go-yaml v2 reads one document
    assert unmarshal_runtime_env_yaml("true") == (
        "failed to unmarshal RuntimeEnvYAML: true: error unmarshaling JSON: while decoding JSON: json: cannot "
        "unmarshal bool into Go value of type types.RuntimeEnvType")  # fmt: skip
    assert (unmarshal_runtime_env_yaml("a: 1\nb") or "").startswith(
        "failed to unmarshal RuntimeEnvYAML: a: 1\nb: error converting YAML to JSON: yaml: line 2: "
    )


# --- KubeRay's samples, through the local API server's CRD defaulting ----------------------------------
KINDS = ("RayJob", "RayCluster", "RayService")


@functools.cache
def _crd(kind: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large
    return yaml.load((CRDS_DIR / f"ray.io_{kind.lower()}s.yaml").read_text(), Loader=loader)


CHECKER = SchemaChecker()  # keeps one validator per CRD version


def _defaulted(doc: dict[str, Any]) -> dict[str, Any]:
    """What the API server stores: pruned and defaulted by the CRD's structural schema, a generateName filled in."""
    doc = copy.deepcopy(doc)
    meta = doc.setdefault("metadata", {})
    meta.setdefault("name", meta.get("generateName", "") + "x1y2z")
    crd = _crd(doc["kind"])
    version = next(v for v in crd["spec"]["versions"] if v["name"] == doc["apiVersion"].split("/")[1])
    return CHECKER.check(doc, crd, version["name"], version["schema"]["openAPIV3Schema"]).obj


SAMPLES = sorted(SAMPLES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_kuberay_samples_are_valid(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict) and d.get("kind") in KINDS]
    assert docs
    for doc in docs:
        assert error_of(_defaulted(doc)) is None


def test_crd_defaults_are_what_make_a_sample_valid() -> None:
    """The interactive-mode sample leaves min/maxReplicas to the CRD; KubeRay only sees them defaulted."""
    [doc] = [
        d
        for d in yaml.safe_load_all((SAMPLES_DIR / "ray-job.interactive-mode.yaml").read_text())
        if d["kind"] == "RayJob"
    ]
    assert (
        error_of(doc)
        == INV + "worker group default-group must set both minReplicas and maxReplicas when autoscaling is disabled"
    )
    group = _defaulted(doc)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 2147483647)


# --- where the provider's rules are stricter than KubeRay's: the emulator must say what KubeRay says ------
@pytest.mark.parametrize(
    ("kind", "changes", "provider_rule"),
    [
        ("RayJob", {"spec.clusterSelector": SELECTOR}, "kuberay:cluster-selector-with-cluster-spec"),
        ("RayJob", {"spec.submissionMode": "BatchMode"}, "kuberay:unknown-submission-mode"),
        ("RayJob", {"~.upgradeStrategy": {"type": "Recreate"}}, "kuberay:upgrade-strategy-not-allowed"),
        ("RayJob", {"spec.runtimeEnvYAML": "pip: [x]\n---\nb: 1"}, "kuberay:invalid-runtime-env-yaml"),
        (
            "RayCluster",
            {"~.workerGroupSpecs": [cluster_spec()["workerGroupSpecs"][0]] * 2},
            "kuberay:worker-group-name-duplicate",
        ),
    ],
)
def test_provider_strictness_does_not_leak_into_the_emulator(
    kind: str, changes: dict[str, Any], provider_rule: str
) -> None:
    body = mutate(obj(kind), changes)
    assert provider_rule in {e.rule for e in (rayjob_rules if kind == "RayJob" else raycluster_rules)(body)}
    assert error_of(body) is None


def test_cluster_spec_beside_a_selector_is_ignored_but_still_validated() -> None:
    body = mutate(obj("RayJob"), {"spec.clusterSelector": SELECTOR, f"{W}.minReplicas": -1})
    assert error_of(body) == INV + "worker group small-group has negative minReplicas -1"


# --- the emulator keeps its own picture of KubeRay ------------------------------------------------------
FORBIDDEN = "kuberay_provider.core.validation"


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports (relative ones resolved), plus string arguments of calls such as
    importlib.import_module(...)."""
    package = controller_pkg.__name__.split(".")
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] if node.level else [])
            module = ".".join(part for part in (base, node.module or "") if part)
            found += [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call):
            found += [arg.value for arg in node.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return found


def test_no_controller_module_imports_the_providers_validation() -> None:
    modules = sorted(Path(controller_pkg.__path__[0]).rglob("*.py"))
    assert len(modules) > 10
    offenders = {p.name: m for p in modules for m in _imports(p) if m == FORBIDDEN or m.startswith(FORBIDDEN + ".")}
    assert not offenders, f"the emulated operator must not use the provider's rules: {offenders}"


def test_the_import_check_sees_relative_imports(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("from ...core import validation\nfrom ...core.validation import rules\n")
    assert {"kuberay_provider.core.validation", "kuberay_provider.core.validation.rules"} <= set(_imports(probe))


# --- rayClusterReconcile: a Warning event and the end of the pass; no status, no requeue ----------------
async def _warnings(h: Harness) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in await h.api.list(EVENTS, NS) if e["type"] == "Warning"]


async def test_invalid_raycluster_gets_only_a_warning_until_its_spec_is_fixed() -> None:
    h = Harness()
    await h.create(RAYCLUSTERS, mutate(obj("RayCluster", "c"), {f"{W}.minReplicas": 9}))
    assert await h.controller.reconcile("RayCluster", NS, "c") is None
    await h.settle()
    cluster = await h.api.get(RAYCLUSTERS, NS, "c")
    assert cluster is not None and not cluster.get("status") and not await h.api.list(PODS, NS)
    message = "The RayCluster spec is invalid default/c: worker group small-group has minReplicas 9 greater than maxReplicas 5"
    assert await _warnings(h) == [("InvalidRayClusterSpec", message)]
    cluster["spec"]["workerGroupSpecs"][0]["minReplicas"] = 0
    await h.api.replace(RAYCLUSTERS, cluster)
    await h.settle()
    fixed = await h.api.get(RAYCLUSTERS, NS, "c")
    assert fixed is not None and fixed["status"]["state"] == "ready" and len(await h.api.list(PODS, NS)) == 2


async def test_a_running_cluster_made_invalid_is_left_as_it_is() -> None:
    h = Harness()
    await h.create(RAYCLUSTERS, obj("RayCluster", "c"))
    await h.settle()
    before, pods = await h.api.get(RAYCLUSTERS, NS, "c"), await h.api.list(PODS, NS)
    assert before is not None and before["status"]["state"] == "ready"
    await h.api.replace(RAYCLUSTERS, mutate(before, {"spec.upgradeStrategy": {"type": "Rolling"}}))
    await h.advance(30)
    after = await h.api.get(RAYCLUSTERS, NS, "c")
    assert after is not None and after["status"] == before["status"] and await h.api.list(PODS, NS) == pods
    assert ("InvalidRayClusterSpec", "The RayCluster UpgradeStrategy is invalid default/c: The RayCluster spec is invalid: "
            "Spec.UpgradeStrategy.Type value Rolling is invalid, valid options are Recreate or None") in await _warnings(h)  # fmt: skip


async def test_an_invalid_status_is_requeued() -> None:
    h = Harness()
    created = await h.create(RAYCLUSTERS, obj("RayCluster", "c"))
    both = [
        {"type": t, "status": "True", "reason": t, "lastTransitionTime": "2024-01-01T00:00:00Z"}
        for t in ("RayClusterSuspending", "RayClusterSuspended")
    ]
    await h.api.replace_status(RAYCLUSTERS, {**created, "status": {"conditions": both}})
    assert await h.controller.reconcile("RayCluster", NS, "c") == 2.0
    [(reason, message)] = await _warnings(h)
    assert (reason, message.split(", ")[0]) == ("InvalidRayClusterStatus", "The RayCluster status is invalid default/c")


async def test_autoscaler_v1_restart_policy_is_only_a_warning() -> None:
    h = Harness()
    changes = {
        "~.enableInTreeAutoscaling": True,
        "~.autoscalerOptions": {"version": "v1"},
        f"{W}.template.spec.restartPolicy": "Always",
    }
    await h.create(RAYCLUSTERS, mutate(obj("RayCluster", "c"), changes))
    await h.settle()
    assert await _warnings(h) == [("InvalidRayClusterSpec", "RayCluster spec warning default/c: restartPolicy for worker groups "
                                   "[small-group] should be Never or unset when using autoscaler V1")]  # fmt: skip
    assert (await h.api.get(RAYCLUSTERS, NS, "c") or {})["status"]["state"] == "ready"


async def test_a_rayjob_cluster_with_an_upgrade_strategy_never_starts() -> None:
    """RayJob validation accepts it; the RayCluster controller refuses the cluster it makes."""
    h = Harness()
    await h.create(RAYJOBS, mutate(obj("RayJob"), {"~.upgradeStrategy": {"type": "Recreate"}}))
    await h.settle()
    assert (await h.status())["jobDeploymentStatus"] == "Initializing" and not await h.api.list(PODS, NS)
    [(reason, message)] = await _warnings(h)
    assert reason == "InvalidRayClusterSpec" and message.endswith(
        "upgradeStrategy cannot be set when RayCluster is created by RayJob"
    )


async def test_through_the_local_api_server_crd_defaults_apply_and_admission_accepts_invalid_clusters() -> None:
    plane = LocalControlPlane(crds_dir=CRDS_DIR, tls=False, backend=FakeRayBackend())
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(plane.serve(stop, on_ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        async with plane.async_api_client() as client:
            api = HttpClusterAPI(client)
            await api.create(
                RAYCLUSTERS,
                NS,
                mutate(obj("RayCluster", "ok"), {f"{W}.minReplicas": DELETE, f"{W}.maxReplicas": DELETE}),
            )
            await api.create(RAYCLUSTERS, NS, mutate(obj("RayCluster", "bad"), {f"{W}.minReplicas": 9}))
            ok: dict[str, Any] = {}
            warned: list[dict[str, Any]] = []
            for _ in range(100):
                ok = await api.get(RAYCLUSTERS, NS, "ok") or {}
                warned = [e for e in await api.list(EVENTS, NS) if e.get("reason") == "InvalidRayClusterSpec"]
                if (ok.get("status") or {}).get("state") == "ready" and warned:
                    break
                await asyncio.sleep(0.1)
            group = ok["spec"]["workerGroupSpecs"][0]
            assert (group["minReplicas"], group["maxReplicas"], ok["status"]["state"]) == (0, 2147483647, "ready")
            assert [e["involvedObject"]["name"] for e in warned] == ["bad"]
            assert not ((await api.get(RAYCLUSTERS, NS, "bad")) or {}).get("status")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
