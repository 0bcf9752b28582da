"""A RayService as KubeRay v1.7.0 reports it; ``core.rayservice_wait`` waits until it serves its latest spec.

What the status can and cannot say (rayservice_controller.go):

* ``Ready`` is True once the serve Service has ready endpoints; ``UpgradeInProgress`` is True while an
  active and a pending cluster both exist. Applications sit under ``pendingServiceStatus`` during the
  first deployment and during a NewCluster upgrade (the active ones are left empty meanwhile).
* ``status.observedGeneration`` is bumped in calculateStatus, *after* reconcileServe has read the
  applications and only then PUT a changed serveConfigV2. The write that first shows a new generation
  therefore still carries the applications' statuses from before the change. KubeRay reads them again on
  each pass (every 2 s) and writes only when something changed, so a state is trusted only when it comes
  from a later write, or when nothing has been written for ``settle_seconds`` after it.
* A validation failure sets Ready False/ValidationFailed without bumping observedGeneration;
  Ready False/InitializingTimeout is terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kuberay_provider.core.schedulers import is_held_by_kueue, kueue_queue_of

SERVE_PORT = 8000  # utils.DefaultServingPort: the serve port of a head container that lists no ports
FAILED_APP_STATUSES = ("DEPLOY_FAILED", "UNHEALTHY")
INITIALIZING_TIMEOUT = "InitializingTimeout"
VALIDATION_FAILED = "ValidationFailed"


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == kind), {})


def _is_serving_port(name: str) -> bool:
    return name == "serve" or name.startswith("serve-")


def serve_service_of(rayservice: Mapping[str, Any]) -> tuple[str, int | None]:
    """The Service KubeRay puts in front of Serve (common/service.go BuildServeService) and its HTTP port:
    ``spec.serveService``'s name, else ``<name>-serve-svc``; the head container's ports named ``serve``
    or ``serve-*`` (8000 when it lists no ports at all), a same-named ``serveService`` port winning, or
    ``serveService``'s own ports when the head has none. The port named ``serve`` is preferred."""
    spec = rayservice.get("spec") or {}
    custom = spec.get("serveService")
    name = ((custom or {}).get("metadata") or {}).get(
        "name"
    ) or f"{(rayservice.get('metadata') or {}).get('name', '')}-serve-svc"
    containers = (
        (((spec.get("rayClusterConfig") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    ).get("containers") or [{}]
    declared = containers[0].get("ports") or []
    head_ports = [(p.get("name") or f"{p.get('containerPort')}-port", p.get("containerPort")) for p in declared] or [
        ("serve", SERVE_PORT)
    ]
    ports = [(port_name, number) for port_name, number in head_ports if _is_serving_port(port_name)]
    user_ports = {p.get("name"): p.get("port") for p in ((custom or {}).get("spec") or {}).get("ports") or []}
    if custom is not None:
        ports = [(port_name, user_ports.get(port_name) or number) for port_name, number in ports] or list(
            user_ports.items()
        )
    chosen = dict(ports).get("serve", ports[0][1] if ports else None)
    return name, int(chosen) if chosen else None


def serve_port_problem(rayservice: Mapping[str, Any]) -> str | None:
    """Why KubeRay could not build the serve Service, or None: a head container listing ports without a
    serve one (and no spec.serveService) leaves the RayService never Ready."""
    spec = rayservice.get("spec") or {}
    containers = (
        (((spec.get("rayClusterConfig") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    ).get("containers") or [{}]
    declared = containers[0].get("ports") or []
    if not declared or spec.get("serveService") is not None:
        return None
    if any(_is_serving_port(p.get("name") or "") for p in declared):
        return None
    return (
        "the head container lists ports but none named 'serve' (or 'serve-*'), so KubeRay cannot create the "
        "serve Service and the RayService never becomes Ready: add {'containerPort': 8000, 'name': 'serve'} "
        "to its ports (or set spec.serveService)"
    )


def _app_statuses(part: Mapping[str, Any]) -> dict[str, str]:
    return {app: str(info.get("status", "")) for app, info in (part.get("applicationStatuses") or {}).items()}


@dataclass(frozen=True)
class RayServiceState:
    namespace: str
    name: str
    generation: int
    observed_generation: int
    ready: bool
    ready_reason: str
    upgrading: bool
    active_cluster: str
    pending_cluster: str
    applications: dict[str, str]  # active cluster's application -> status (RUNNING, DEPLOYING, DEPLOY_FAILED...)
    queue_name: str = ""  # the Kueue LocalQueue it is queued on ("": none)
    held_by_kueue: bool = False  # queued and still suspended (spec.rayClusterConfig.suspend)
    pending_applications: dict[str, str] = field(default_factory=dict)  # pending cluster's, same form
    ready_message: str = ""
    app_messages: dict[str, str] = field(default_factory=dict)  # application -> Serve's message, where there is one
    serve_service: str = ""
    serve_port: int | None = None

    @classmethod
    def from_object(cls, service: Mapping[str, Any]) -> RayServiceState:
        metadata, status = service.get("metadata") or {}, service.get("status") or {}
        ready, upgrade = _condition(status, "Ready"), _condition(status, "UpgradeInProgress")
        active, pending = status.get("activeServiceStatus") or {}, status.get("pendingServiceStatus") or {}
        messages = {
            app: str(info["message"])
            for part in (active, pending)
            for app, info in (part.get("applicationStatuses") or {}).items()
            if info.get("message")
        }
        serve_service, serve_port = serve_service_of(service)
        return cls(
            namespace=str(metadata.get("namespace", "")),
            name=str(metadata.get("name", "")),
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            ready=ready.get("status") == "True",
            ready_reason=str(ready.get("reason") or ""),
            upgrading=upgrade.get("status") == "True",
            active_cluster=str(active.get("rayClusterName") or ""),
            pending_cluster=str(pending.get("rayClusterName") or ""),
            applications=_app_statuses(active),
            queue_name=kueue_queue_of(service),
            held_by_kueue=is_held_by_kueue(service),
            pending_applications=_app_statuses(pending),
            ready_message=str(ready.get("message") or ""),
            app_messages=messages,
            serve_service=serve_service,
            serve_port=serve_port,
        )

    @property
    def caught_up(self) -> bool:
        """KubeRay has reconciled the latest spec (not that its applications run yet: see the module)."""
        return self.observed_generation >= self.generation

    @property
    def is_ready(self) -> bool:
        """This snapshot serves the latest spec: applied, Ready, no upgrade in progress, every application
        running. A wait also makes sure the applications were read after the change (ServiceTracker)."""
        running = bool(self.applications) and all(status == "RUNNING" for status in self.applications.values())
        return self.caught_up and self.ready and not self.upgrading and running

    @property
    def failed_applications(self) -> dict[str, str]:
        """Applications Serve could not deploy or that went unhealthy, on the active or the pending cluster."""
        apps = {**self.applications, **self.pending_applications}
        return {app: status for app, status in apps.items() if status in FAILED_APP_STATUSES}

    @property
    def serve_endpoint(self) -> str:
        """The in-cluster URL of the serve Service ("" when KubeRay could not build one)."""
        if self.serve_port is None:
            return ""
        return f"http://{self.serve_service}.{self.namespace}.svc.cluster.local:{self.serve_port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "ready": self.ready,
            "upgrading": self.upgrading,
            "active_cluster": self.active_cluster,
            "pending_cluster": self.pending_cluster,
            "applications": dict(self.applications),
            "pending_applications": dict(self.pending_applications),
            "serve_endpoint": self.serve_endpoint,
            "serve_service": self.serve_service,
        }

    def describe(self) -> str:
        def listed(apps: Mapping[str, str]) -> str:
            return ", ".join(f"{app}={status}" for app, status in sorted(apps.items())) or "none yet"

        ready = f"{self.ready} ({self.ready_reason})" if self.ready_reason else str(self.ready)
        text = (
            f"RayService {self.namespace}/{self.name}: ready={ready} upgrading={self.upgrading} "
            f"active={self.active_cluster or '-'} pending={self.pending_cluster or '-'} applications: {listed(self.applications)}"
        )
        if self.pending_applications:
            text += f"; pending applications: {listed(self.pending_applications)}"
        if self.held_by_kueue:
            text += f" queued for admission on Kueue LocalQueue {self.queue_name!r}"
        return text if self.caught_up else f"{text} (spec generation {self.generation} not yet applied)"

    def failure(self) -> str | None:
        """What KubeRay's status says stops this spec from being served, with what to do; None if nothing."""
        where = f"RayService {self.namespace}/{self.name}"
        if self.ready_reason == INITIALIZING_TIMEOUT:
            return (
                f"{where} gave up initializing: {self.ready_message} KubeRay does not recover from this: delete the "
                "RayService and create it again (raise its ray.io/initializing-timeout annotation if it needs longer), "
                "or suspend and resume it."
            )
        if self.ready_reason == VALIDATION_FAILED and not self.caught_up:
            return (
                f"KubeRay refused generation {self.generation} of {where}: {self.ready_message} Correct the spec and "
                "apply it again; KubeRay keeps the previous spec running meanwhile."
            )
        if self.failed_applications:
            failed = ", ".join(
                f"{app} {status}" + (f" ({self.app_messages[app]})" if app in self.app_messages else "")
                for app, status in sorted(self.failed_applications.items())
            )
            cluster = self.pending_cluster or self.active_cluster or "-"
            return (
                f"{where}: Serve applications failed on cluster {cluster}: {failed}. Fix the application (see the "
                f"message, `kubectl describe rayservice {self.name} -n {self.namespace}` and the Serve logs on the head "
                "Pod) and apply a corrected serve config; the wait does not end otherwise."
            )
        return None
