"""What a task asks for: one Ray job, and how it should run. Orchestrator-neutral.

Three ways to run, chosen by the arguments:

* **create** (default): a RayJob with its own cluster (``rayClusterSpec``); KubeRay submits the job.
* **sdk**: the same RayJob in ``InteractiveMode``; the provider submits the entrypoint itself through the
  Ray Jobs SDK under a deterministic submission id and then sets ``spec.jobId``.
* **existing cluster**: ``cluster_selector`` names a RayCluster. Through a RayJob with ``clusterSelector``
  (KubeRay submits), or with ``submit_via="sdk"`` straight to that cluster's head, no RayJob at all.

The RayJob's name and labels come from the run's identity (``core.naming``), so a retried try finds the
RayJob its first try created instead of creating a second one.

``RayJobRequest.mode`` (a ``RunMode``) names the way the arguments chose, once, for the code that runs it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

from kuberay_provider.core.cleanup import apply_cleanup, cleanup_spec_fields
from kuberay_provider.core.errors import ArgumentError, ConfigurationError
from kuberay_provider.core.manifests import load_manifest
from kuberay_provider.core.naming import (
    ANNOTATION_FIRST_TRY,
    ANNOTATION_TRY_NUMBER,
    check_instance_id,
    identity_labels,
    rayjob_name,
    submission_id,
    task_key,
    task_labels,
)
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.schedulers import kueue_queue_of, scheduling_labels, suspend_for_kueue
from kuberay_provider.core.spec import RAYJOB_SPEC_FIELDS, build_manifest, runtime_env_from_yaml
from kuberay_provider.core.status import SubmissionMode

CLUSTER_SELECTOR_KEY = "ray.io/cluster"
RAYJOB_KEYWORDS = frozenset(RAYJOB_SPEC_FIELDS) | {"runtime_env"}


class SubmitVia(str, Enum):
    KUBERAY = "kuberay"  # KubeRay's submitter (K8sJobMode by default, or the spec's submissionMode)
    SDK = "sdk"  # the provider, through the Ray Jobs SDK


class RunMode(str, Enum):
    """Where the job runs and who submits it: the one choice the request's arguments make."""

    OWN_CLUSTER = "own_cluster"  # a RayJob with its own cluster; KubeRay submits
    INTERACTIVE = "interactive"  # a RayJob with its own cluster in InteractiveMode; the provider submits
    CLUSTER_SELECTOR = "cluster_selector"  # a RayJob with clusterSelector on an existing RayCluster; KubeRay submits
    SELECTED_HEAD = "selected_head"  # straight to an existing RayCluster's head through the SDK; no RayJob
    BARE_HEAD = "bare_head"  # straight to a Ray head no RayCluster describes (head_service / volcano_job)

    @classmethod
    def of(cls, submit_via: SubmitVia, *, selected: bool, bare_head: bool) -> RunMode:
        if bare_head:
            return cls.BARE_HEAD
        if submit_via is SubmitVia.SDK:
            return cls.SELECTED_HEAD if selected else cls.INTERACTIVE
        return cls.CLUSTER_SELECTOR if selected else cls.OWN_CLUSTER

    @property
    def creates_rayjob(self) -> bool:
        return self not in (RunMode.SELECTED_HEAD, RunMode.BARE_HEAD)

    @property
    def provider_submits(self) -> bool:
        """The provider (not KubeRay) submits the Ray job, through the Ray Jobs SDK."""
        return self in (RunMode.INTERACTIVE, RunMode.SELECTED_HEAD, RunMode.BARE_HEAD)

    @property
    def own_cluster(self) -> bool:
        """The RayJob brings its own cluster (which its cleanup choice applies to)."""
        return self in (RunMode.OWN_CLUSTER, RunMode.INTERACTIVE)


@dataclass(frozen=True)
class RunIdentity:
    """Who runs the job: (dag or flow, task, run, map index), and the deployment's ``instance`` id when
    several share a namespace ("": none, the names of before). Names and labels derive from it."""

    owner: str
    task: str
    run_id: str
    map_index: int | None = None
    instance: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "instance", check_instance_id(self.instance, "instance"))

    @property
    def key(self) -> str:
        return task_key(self.owner, self.task, self.run_id, self.map_index, self.instance)

    @property
    def rayjob_name(self) -> str:
        return rayjob_name(self.owner, self.task, self.run_id, self.map_index, instance=self.instance)

    @property
    def labels(self) -> dict[str, str]:
        """The run-key label (what re-attach checks) and the readable identity (what selectors use)."""
        return {
            **identity_labels(self.key),
            **task_labels(self.owner, self.task, self.run_id, self.map_index, self.instance),
        }


def normalize_cluster_selector(selector: str | Mapping[str, str] | None) -> dict[str, str] | None:
    """A RayCluster name, or KubeRay's ``{"ray.io/cluster": name}`` mapping."""
    if selector is None or selector == "" or selector == {}:
        return None
    if isinstance(selector, str):
        return {CLUSTER_SELECTOR_KEY: selector}
    return {str(k): str(v) for k, v in selector.items()}


@dataclass(frozen=True)
class JobSubmission:
    """What the provider hands to the Ray Jobs SDK (the SDK paths), read from the RayJob's spec."""

    submission_id: str
    entrypoint: str
    runtime_env: dict[str, Any] | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_resources: dict[str, float] | None = None
    metadata: dict[str, str] | None = None

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any], job_id: str) -> JobSubmission:
        spec = manifest.get("spec") or {}
        if not str(spec.get("entrypoint") or "").strip():
            raise ConfigurationError("submitting through the Ray Jobs SDK needs an entrypoint")
        resources = spec.get("entrypointResources")
        return cls(
            submission_id=job_id,
            entrypoint=spec["entrypoint"],
            runtime_env=runtime_env_from_yaml(spec.get("runtimeEnvYAML")) or None,
            entrypoint_num_cpus=spec.get("entrypointNumCpus"),
            entrypoint_num_gpus=spec.get("entrypointNumGpus"),
            entrypoint_resources=json.loads(resources) if isinstance(resources, str) and resources else None,
            metadata=dict(spec.get("metadata") or {}) or None,
        )

    def submit_arguments(self) -> dict[str, Any]:
        return {
            "submission_id": self.submission_id,
            "entrypoint": self.entrypoint,
            "runtime_env": self.runtime_env,
            "metadata": self.metadata,
            "entrypoint_num_cpus": self.entrypoint_num_cpus,
            "entrypoint_num_gpus": self.entrypoint_num_gpus,
            "entrypoint_resources": self.entrypoint_resources,
        }


@dataclass(frozen=True)
class RayJobRequest:
    """One task's Ray job. ``rayjob`` is a base manifest (dict, YAML/JSON text or file path) that the
    keyword ``spec_params`` (any RayJob spec field in snake_case, plus ``runtime_env``) override."""

    identity: RunIdentity
    namespace: str | None = None  # None: the base manifest's, else "default"
    name: str | None = None  # None: derived from the identity
    rayjob: Mapping[str, Any] | str | None = None
    spec_params: Mapping[str, Any] = field(default_factory=dict)
    cluster_selector: str | Mapping[str, str] | None = None
    submit_via: SubmitVia | str = SubmitVia.KUBERAY
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    try_number: int | None = None  # the orchestrator's try: a later try replaces a failed RayJob
    # The first try of the task's current series (Airflow: since the last clear); None: not known. An outcome
    # reported before it is the earlier run's, so this try runs the job again (core.lifecycle).
    first_try_number: int | None = None
    cleanup: str | None = None  # a core.cleanup choice, written into the spec's cleanup fields
    queue_name: str | None = None  # a Kueue LocalQueue: the RayJob is created suspended, Kueue admits it
    admission_timeout: float | None = None  # seconds it may wait for Kueue's admission (None: no own limit)
    volcano_queue: str | None = None  # a Volcano Queue (KubeRay's Volcano batch scheduler)
    head_service: str | None = None  # a Ray head's Service no RayCluster owns: SDK submission straight to it
    volcano_job: str | None = None  # a Volcano Job whose ray plugin exposes the head (``<job>-head-svc``)
    # Local folders the SDK submission uploads as py_modules (a shipped function, core.functions); kept out
    # of the RayJob itself, whose spec must not name paths on this machine.
    ship_py_modules: tuple[str, ...] = ()
    # A cleanup choice the task applies itself once it has read the job's result (a shipped function's,
    # in the job's log); ``cleanup`` then only holds the cluster until that read (core.function_runs).
    cleanup_after_read: str | None = None
    mode: RunMode = field(init=False, compare=False)  # computed from the arguments above

    def __post_init__(self) -> None:
        unknown = sorted(set(self.spec_params) - RAYJOB_KEYWORDS)
        if unknown:
            raise ArgumentError(
                f"unknown RayJob spec parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(RAYJOB_KEYWORDS))}"
            )
        try:
            object.__setattr__(self, "submit_via", SubmitVia(self.submit_via))
        except ValueError:
            raise ConfigurationError(
                f"submit_via must be one of {', '.join(repr(v.value) for v in SubmitVia)}, got {self.submit_via!r}"
            ) from None
        object.__setattr__(
            self,
            "mode",
            RunMode.of(
                SubmitVia(self.submit_via),
                selected=self.selector is not None,
                bare_head=bool(self.head_service or self.volcano_job),
            ),
        )
        for choice in (self.cleanup, self.cleanup_after_read):
            if choice is not None:
                cleanup_spec_fields(choice)  # an unknown choice fails here, not at launch
        if self.queue_name and self.spec_params.get("suspend") is False:
            raise ConfigurationError(
                "queue_name: Kueue admits a RayJob by unsuspending it, so it is created with suspend=True; drop suspend=False"
            )
        if self.queue_name and self.mode is RunMode.INTERACTIVE:
            # KubeRay v1.7 on resume after a preemption: the status's job id is reset and a new cluster is
            # made, but spec.jobId still names the job we submitted to the old one, so the RayJob goes
            # Running on a job that does not exist there and waits forever (404s are silent in Interactive).
            raise ConfigurationError(
                "queue_name with submit_via='sdk' (InteractiveMode) is refused: when Kueue preempts the RayJob, "
                "KubeRay resumes it on a new cluster still tracking the Ray job id submitted to the old one, "
                "which never finishes there. "
                + (
                    "A Python function is shipped through the SDK, so run it without queue_name (or run a script "
                    "entrypoint with queue_name)"
                    if self.ship_py_modules
                    else "Let KubeRay submit (submit_via='kuberay', the default)"
                )
            )
        if self.ship_py_modules and not self.mode.provider_submits:
            raise ConfigurationError("shipping a function needs the Ray Jobs SDK to upload it: submit_via='sdk'")
        if self.head_service and self.volcano_job:
            raise ConfigurationError("give head_service or volcano_job, not both: each names the Ray head to submit to")
        if (self.head_service or self.volcano_job) and (self.selector is not None or self.queue_name):
            raise ConfigurationError(
                "head_service / volcano_job submit straight to a Ray head: no cluster_selector or queue_name with them"
            )
        if self.admission_timeout is not None and self.admission_timeout <= 0:
            raise ConfigurationError(f"admission_timeout must be positive seconds, got {self.admission_timeout!r}")

    @property
    def rayjob_name(self) -> str:
        return self.name or self.identity.rayjob_name

    @cached_property
    def base_manifest(self) -> dict[str, Any] | None:
        return load_manifest(self.rayjob, kind="RayJob") if self.rayjob is not None else None

    @property
    def manifest_namespace(self) -> str | None:
        return ((self.base_manifest or {}).get("metadata") or {}).get("namespace") or None

    @property
    def resolved_namespace(self) -> str:
        return self.namespace or self.manifest_namespace or "default"

    @property
    def selector(self) -> dict[str, str] | None:
        return normalize_cluster_selector(self.cluster_selector)

    @property
    def selected_cluster(self) -> str | None:
        return (self.selector or {}).get(CLUSTER_SELECTOR_KEY)

    # Read-only views of ``mode``, kept for the runners and the Prefect side, which still ask these questions.
    @property
    def on_bare_head(self) -> bool:
        return self.mode is RunMode.BARE_HEAD

    @property
    def runs_without_rayjob(self) -> bool:
        return not self.mode.creates_rayjob

    @property
    def submits_itself(self) -> bool:
        return self.mode.provider_submits

    @property
    def result_in_log(self) -> bool:
        """The job's result lives only in its log, on its cluster (a shipped function): a succeeded RayJob
        whose cluster is gone has nothing left to re-attach to."""
        return bool(self.ship_py_modules)

    @property
    def submission_id(self) -> str:
        # Straight to a Ray head no RayJob carries the consumed mark, so a cleared task (Airflow begins a new
        # series of tries) submits under an id of its own and runs the job anew; a retry keeps the series'
        # id and re-attaches. Through a RayJob the mark decides, and the id stays as it was.
        series = None if self.mode.creates_rayjob else self.first_try_number
        return submission_id(self.rayjob_name, series=series)

    @property
    def kueue_queue(self) -> str:
        """The Kueue LocalQueue the RayJob waits on: ``queue_name``, or the base manifest's label ("": none)."""
        return self.queue_name or kueue_queue_of(self.base_manifest)

    def manifest(self) -> dict[str, Any]:
        """The RayJob to create (on the direct SDK path too: its spec holds the entrypoint).

        A name in the base manifest gives way to the derived one, which is what makes re-attach work;
        pass ``name`` to choose one.
        """
        params = dict(self.spec_params)
        if self.selector is not None:
            params["cluster_selector"] = self.selector
        if self.mode is RunMode.INTERACTIVE:
            params["submission_mode"] = SubmissionMode.INTERACTIVE.value
        labels = {**dict(self.labels), **scheduling_labels(self.queue_name, self.volcano_queue), **self.identity.labels}
        annotations = dict(self.annotations)
        if self.try_number is not None:
            annotations[ANNOTATION_TRY_NUMBER] = str(self.try_number)
        if self.first_try_number is not None:
            annotations[ANNOTATION_FIRST_TRY] = str(self.first_try_number)
        manifest = build_manifest(
            RAYJOB,
            self.rayjob_name,
            self.resolved_namespace,
            labels=labels,
            annotations=annotations or None,
            base=self.base_manifest,
            **params,
        )
        if self.cleanup is not None:
            manifest["spec"] = apply_cleanup(manifest["spec"], self.cleanup)
        return suspend_for_kueue(manifest)

    def submission(self) -> JobSubmission:
        submission = JobSubmission.from_manifest(self.manifest(), self.submission_id)
        if not self.ship_py_modules:
            return submission
        runtime_env = dict(submission.runtime_env or {})
        runtime_env["py_modules"] = [*list(runtime_env.get("py_modules") or []), *self.ship_py_modules]
        return dataclasses.replace(submission, runtime_env=runtime_env)
