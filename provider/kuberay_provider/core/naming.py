"""Deterministic, valid names for the objects a task creates.

A retried task try must find the RayJob its first try created, and a new run must never reuse it, so the
name is a pure function of the run's identity (dag or flow, task, run, map index, and the deployment's
instance id when one is set: several Airflow deployments may share a namespace). KubeRay appends
``-<5 chars>`` to a RayJob's name for its RayCluster and caps RayCluster names at 53, so a RayJob name is a
DNS-1035 label of at most 47 characters (utils.MaxRayJobNameLength in KubeRay v1.7.0).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from typing import Any

from kuberay_provider.core.errors import ConfigurationError

# KubeRay's name limits, the one place the provider's names and its validation (core/validation) read them.
MAX_RAYJOB_NAME = 47
MAX_RAYCLUSTER_NAME = 53
# A RayService's RayCluster is also named "<name>-<5 chars>" (utils.MaxRayServiceNameLength).
MAX_RAYSERVICE_NAME = MAX_RAYJOB_NAME
# Kubernetes' own limits (k8s.io/apimachinery/pkg/util/validation).
MAX_DNS_LABEL = 63
MAX_LABEL_VALUE = 63
_HASH_CHARS = 10  # 40 bits: a collision needs ~10^6 distinct runs of one task to become likely
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")

# Labels the provider puts on what it creates, so a retry can also find objects by identity.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_RUN_KEY = "kuberay-provider.io/run-key"
MANAGED_BY_VALUE = "kuberay-provider"
# The run's identity in readable labels, to find (and clean up) a run's RayJobs with a label selector.
# "owner" is what owns the task: Airflow's dag_id, Prefect's flow name.
LABEL_OWNER = "kuberay-provider.io/owner"
LABEL_TASK = "kuberay-provider.io/task"
LABEL_RUN_ID = "kuberay-provider.io/run-id"
LABEL_MAP_INDEX = "kuberay-provider.io/map-index"
# The deployment (e.g. "prod", "staging") that made the object, when several share a namespace; absent
# when it has no instance id, so the objects of a deployment without one look exactly as before.
LABEL_INSTANCE = "kuberay-provider.io/instance"
UNMAPPED = "none"
# The orchestrator's try number that created the RayJob: a later try replaces a failed RayJob.
ANNOTATION_TRY_NUMBER = "kuberay-provider.io/try-number"
# The first try of the task's current series of tries: Airflow starts a new series when a task is cleared
# (or a backfill reprocesses its run). A try of the same series is a retry; an outcome reported before the
# series began belongs to the run the user asked to repeat.
ANNOTATION_FIRST_TRY = "kuberay-provider.io/first-try-number"
# The try that reported the RayJob's outcome to the orchestrator (cncf.kubernetes' ``already_checked``).
ANNOTATION_CONSUMED_BY_TRY = "kuberay-provider.io/consumed-by-try"
# A digest of the spec as the provider rendered it: a later try re-attaches only to the same spec.
ANNOTATION_SPEC_DIGEST = "kuberay-provider.io/spec-digest"


def is_dns1035_label(name: str, max_length: int = MAX_DNS_LABEL) -> bool:
    return len(name) <= max_length and bool(_DNS_1035.match(name))


def sanitize(text: str) -> str:
    """Lower-case, runs of anything outside [a-z0-9] become one '-', trimmed of '-' at both ends."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def run_key(*identity: object) -> str:
    """A short stable digest of a run's identity; the same parts always give the same key."""
    joined = "\x1f".join("" if part is None else str(part) for part in identity)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:_HASH_CHARS]


def check_instance_id(value: object, field: str = "instance_id") -> str:
    """``value`` as an instance id: "" (none) or a DNS-1123 label, as it becomes a label value and part of
    names. ConfigurationError naming ``field`` otherwise."""
    text = "" if value is None else str(value).strip()
    if text and not (len(text) <= MAX_LABEL_VALUE and _DNS_1123.match(text)):
        raise ConfigurationError(
            f"{field}={text!r} is not a valid instance id: use at most {MAX_LABEL_VALUE} lower-case letters, digits "
            "and '-', starting and ending with a letter or digit (e.g. 'prod', 'staging-eu'), or leave it empty"
        )
    return text


def task_key(owner: str, task: str, run_id: str, map_index: int | None = None, instance: str = "") -> str:
    """The run key of one task of one run (the digest in its RayJob's name). ``map_index`` < 0 (Airflow's
    "not mapped") counts as no index; no instance id leaves the key as it was before instance ids existed."""
    index = None if map_index is None or map_index < 0 else map_index
    return run_key(owner, task, run_id, index, instance) if instance else run_key(owner, task, run_id, index)


def rayjob_name(
    owner: str,
    task: str,
    run_id: str,
    map_index: int | None = None,
    *,
    instance: str = "",
    max_length: int = MAX_RAYJOB_NAME,
) -> str:
    """``<owner>-<task>-<digest>``, shortened to fit, e.g. ``nightly-scoring-score-3f9a0c12de``.

    The readable part helps a person running ``kubectl get rayjobs``; the digest of the full identity
    (``task_key``) keeps names distinct however the readable part was shortened.
    """
    digest = task_key(owner, task, run_id, map_index, instance)
    room = max_length - len(digest) - 1
    readable = sanitize(f"{owner}-{task}")[:room].strip("-")
    # A DNS-1035 label must start with a letter; the digest may start with a digit.
    if not readable or not readable[0].isalpha():
        readable = ("r-" + readable)[:room].strip("-")
    name = f"{readable}-{digest}"
    assert is_dns1035_label(name, max_length), name
    return name


def submission_id(rayjob: str, *, series: int | None = None) -> str:
    """The Ray job id the provider submits under for a RayJob (InteractiveMode / SDK paths).

    Fixed per RayJob and series of tries, so a retried submission meets Ray's "already exists" instead of
    starting the job twice. ``series`` is the first try of a series after the first (a cleared task's);
    the first series keeps the plain id.
    """
    return f"{rayjob}-sdk" if series is None or series <= 1 else f"{rayjob}-sdk-s{series}"


def identity_labels(key: str) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY_VALUE, LABEL_RUN_KEY: key}


def label_value(text: str) -> str:
    """``text`` as a Kubernetes label value (at most 63 characters of ``[A-Za-z0-9._-]``, alphanumeric at
    both ends). A valid value is kept as it is; any other keeps a readable cleaned part and gains a digest
    of the original, so two different texts never share a value (``a:b`` and ``a+b`` stay apart)."""
    if len(text) <= MAX_LABEL_VALUE and _LABEL_VALUE.match(text):
        return text
    digest = run_key(text)
    room = MAX_LABEL_VALUE - len(digest) - 1
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:room].rstrip("._-")
    return f"{readable}-{digest}" if readable else digest


def run_labels(owner: str, run_id: str, instance: str = "") -> dict[str, str]:
    """The labels every object of one run carries: a selector for "everything this run created"."""
    labels = {LABEL_OWNER: label_value(owner), LABEL_RUN_ID: label_value(run_id)}
    return {**labels, LABEL_INSTANCE: instance} if instance else labels


def run_selector(owner: str, run_id: str, instance: str = "") -> str:
    """``run_labels`` as a label selector, for this instance's objects only: without an instance id, the
    objects WITHOUT the instance label (``!key``), so a deployment that has none never selects another's."""
    terms = [f"{key}={value}" for key, value in run_labels(owner, run_id, instance).items()]
    return ",".join(terms if instance else [*terms, f"!{LABEL_INSTANCE}"])


def task_labels(owner: str, task: str, run_id: str, map_index: int | None, instance: str = "") -> dict[str, str]:
    index = UNMAPPED if map_index is None or map_index < 0 else str(map_index)
    return {**run_labels(owner, run_id, instance), LABEL_TASK: label_value(task), LABEL_MAP_INDEX: index}


def spec_digest(spec: Mapping[str, Any], ignored: Collection[str] = (), ignored_metadata: Collection[str] = ()) -> str:
    """A short digest of a rendered spec (key order does not matter), without the top-level fields in
    ``ignored`` and the ``spec.metadata`` entries in ``ignored_metadata``: what others change after the
    create (Kueue's ``suspend``, the provider's ``jobId``) or what differs per try by design."""
    kept = {key: value for key, value in spec.items() if key not in ignored}
    if isinstance(kept.get("metadata"), Mapping) and ignored_metadata:
        kept["metadata"] = {key: value for key, value in kept["metadata"].items() if key not in ignored_metadata}
    text = json.dumps(kept, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
