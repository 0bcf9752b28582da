"""A RayCluster spec's head and worker group rules (ValidateRayClusterSpec, part 1).

Part of the port of KubeRay v1.7.0's validation; see ``rules.py`` for the source and the conventions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .common import (
    DEFAULT_MAX_REPLICAS,
    RAY_ENABLE_AUTOSCALER_V2,
    Errors,
    as_int,
    as_list,
    as_map,
    as_str,
    dig,
    find_env,
    label_value_errors,
    parse_ray_version,
    qualified_name_errors,
    rule_error,
)

# --- RayCluster spec (also embedded in RayJob and RayService) --------------------------------------


@dataclass(frozen=True)
class ClusterSpec:
    """A RayClusterSpec with the path it sits at and the annotations of the object that owns it."""

    spec: dict[str, Any]
    path: str
    annotations: dict[str, Any]

    def at(self, *parts: str) -> str:
        return ".".join((self.path, *parts))

    @property
    def autoscaling(self) -> bool:
        return self.spec.get("enableInTreeAutoscaling") is True

    @property
    def autoscaler_v2(self) -> bool:
        return as_str(dig(self.spec, "autoscalerOptions", "version")) == "v2"

    @property
    def head(self) -> dict[str, Any]:
        return as_map(self.spec.get("headGroupSpec"))

    @property
    def head_container(self) -> dict[str, Any] | None:
        """The Ray container (index 0); None when there is none, since KubeRay cannot go on then."""
        containers = as_list(dig(self.head, "template", "spec", "containers"))
        return containers[0] if containers and isinstance(containers[0], dict) else None

    @property
    def head_env(self) -> list[Any]:
        return as_list(as_map(self.head_container).get("env"))

    @property
    def head_env_path(self) -> str:
        return self.at("headGroupSpec.template.spec.containers[0].env")

    def workers(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for index, group in enumerate(as_list(self.spec.get("workerGroupSpecs"))):
            if isinstance(group, dict):
                yield self.at(f"workerGroupSpecs[{index}]"), group

    def autoscaler_v2_via_env(self) -> bool:
        env = find_env(self.head_env, RAY_ENABLE_AUTOSCALER_V2)
        return env is not None and env.get("value") in ("1", "true")


def _group_start_params_rules(group: dict[str, Any], path: str, name: str) -> Errors:
    """validateRayGroupResources and validateRayGroupLabels."""
    params = as_map(group.get("rayStartParams"))
    if any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")) and as_map(group.get("resources")):
        yield rule_error(
            f"{path}.resources",
            "group-resources-conflict",
            f"resource fields should not be set in both rayStartParams and Resources for {name} group; "
            "please use only one",
        )
    if "labels" in params:
        yield rule_error(
            f"{path}.rayStartParams.labels",
            "ray-start-params-labels",
            f"rayStartParams['labels'] is not supported for {name} group; please use the top-level Labels "
            "field instead",
        )
    for key, value in as_map(group.get("labels")).items():
        problems = qualified_name_errors(key) + label_value_errors(value) if isinstance(value, str) else []
        if problems:
            yield rule_error(
                f"{path}.labels",
                "invalid-group-label",
                f"invalid label '{key}: {value}' for {name} group: {'; '.join(problems)}",
            )


def _lacks_containers(group: Any) -> bool:
    """True when the pod template has no container; a wrong type on the way is the schema's to report."""
    node: Any = group
    for key in ("template", "spec", "containers"):
        if node is None:
            return True
        if not isinstance(node, dict):
            return False
        node = node.get(key)
    return node is None or node == []


def head_group_rules(c: ClusterSpec) -> Errors:
    path = c.at("headGroupSpec")
    if _lacks_containers(c.spec.get("headGroupSpec")):
        yield rule_error(
            f"{path}.template.spec.containers",
            "head-containers-required",
            "headGroupSpec should have at least one container",
        )
    yield from _group_start_params_rules(c.head, path, "Head")


def _replica_rules(group: dict[str, Any], path: str, name: str) -> Errors:
    # Missing min/maxReplicas take their CRD defaults (0, MaxInt32), so KubeRay's "must set both" never fires.
    min_replicas = as_int(group.get("minReplicas")) if "minReplicas" in group else 0
    max_replicas = as_int(group.get("maxReplicas")) if "maxReplicas" in group else DEFAULT_MAX_REPLICAS
    if min_replicas is not None and min_replicas < 0:
        yield rule_error(
            f"{path}.minReplicas",
            "negative-min-replicas",
            f"worker group {name} has negative minReplicas {min_replicas}",
        )
    if max_replicas is not None and max_replicas < 0:
        yield rule_error(
            f"{path}.maxReplicas",
            "negative-max-replicas",
            f"worker group {name} has negative maxReplicas {max_replicas}",
        )
    if min_replicas is not None and max_replicas is not None and min_replicas > max_replicas:
        yield rule_error(
            f"{path}.minReplicas",
            "min-replicas-exceeds-max",
            f"worker group {name} has minReplicas {min_replicas} greater than maxReplicas {max_replicas}",
        )


def _needs_autoscaler_v2(c: ClusterSpec) -> bool:
    return not (c.autoscaler_v2 or c.autoscaler_v2_via_env())


def _idle_timeout_rules(c: ClusterSpec, group: dict[str, Any], path: str, name: str) -> Errors:
    timeout = as_int(group.get("idleTimeoutSeconds"))
    if timeout is None:
        return
    if timeout < 0:
        yield rule_error(
            f"{path}.idleTimeoutSeconds",
            "negative-idle-timeout",
            f"worker group {name}: idleTimeoutSeconds must be non-negative, got {timeout}",
        )
    elif _needs_autoscaler_v2(c):
        yield rule_error(
            f"{path}.idleTimeoutSeconds",
            "idle-timeout-requires-autoscaler-v2",
            f"worker group {name}: idleTimeoutSeconds is set, but autoscaler v2 is not enabled. Please set "
            ".spec.autoscalerOptions.version to 'v2'",
        )


def min_ray_version_problem(c: ClusterSpec, minimum: tuple[int, ...], what: str) -> str | None:
    """The message KubeRay gives when spec.rayVersion is missing, unparsable or below ``minimum``."""
    wanted = ".".join(map(str, minimum))
    text = as_str(c.spec.get("rayVersion"))
    if not text:
        return f"{what} but RayVersion was not specified. Ray version {wanted} or later is required"
    version = parse_ray_version(text)
    if version is None:
        return f"{what} but RayVersion format is invalid: {text}"
    if version < minimum:
        return f"{what} but minimum Ray version is {wanted}, got {text}"
    return None


def _priority_rules(c: ClusterSpec, group: dict[str, Any], path: str, name: str) -> Errors:
    priority = as_int(group.get("priority"))
    if not priority:
        return
    if problem := min_ray_version_problem(c, (2, 56, 0), f"worker group {name}: priority is set,"):
        yield rule_error(f"{path}.priority", "priority-ray-version", problem)
    elif _needs_autoscaler_v2(c):
        yield rule_error(
            f"{path}.priority",
            "priority-requires-autoscaler-v2",
            f"worker group {name}: priority is set to {priority}, but autoscaler v2 is not enabled. Priority "
            "is only supported with autoscaler v2 enabled",
        )


def worker_group_rules(c: ClusterSpec) -> Errors:
    seen: set[Any] = set()
    for path, group in c.workers():
        name = as_str(group.get("groupName"))
        if _lacks_containers(group):
            yield rule_error(
                f"{path}.template.spec.containers",
                "worker-containers-required",
                "workerGroupSpec should have at least one container",
            )
        yield from _replica_rules(group, path, name)
        yield from _group_start_params_rules(group, path, name)
        yield from _idle_timeout_rules(c, group, path, name)
        yield from _priority_rules(c, group, path, name)
        # From the RayCluster validating webhook (pkg/webhooks/v1/raycluster_webhook.go).
        if isinstance(group.get("groupName"), str):
            if name in seen:
                yield rule_error(
                    f"{path}.groupName", "worker-group-name-duplicate", "worker group names must be unique"
                )
            seen.add(name)
        if group.get("suspend") is True and c.autoscaling:
            yield rule_error(
                f"{path}.suspend",
                "worker-suspend-with-autoscaling",
                f"worker group {name} cannot be suspended with Autoscaler enabled",
            )
        restart = dig(group, "template", "spec", "restartPolicy")
        if c.autoscaling and c.autoscaler_v2 and restart not in (None, "", "Never"):
            yield rule_error(
                f"{path}.template.spec.restartPolicy",
                "autoscaler-v2-restart-policy",
                f"restartPolicy for worker group {name} should be Never or unset when using autoscaler V2",
            )
