"""create_or_attach across tries: which earlier RayJob a try re-attaches to and which it replaces.

The decision table of ``core.lifecycle.reuse_of``: the earlier RayJob live, succeeded or failed; its outcome
reported (consumed) or not; its spec the same or changed; asked for by the same try, a retry of the same
series, the first try after a clear, or a try of a run recreated with tries counted from 1 again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kuberay_provider.core.function_keys import META_KEY_ID, META_PACKAGE, META_TRY
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.kube.errors import AlreadyExistsError, NotFoundError
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.lifecycle import RayJobLifecycle, rayjob_spec_digest, with_spec_digest
from kuberay_provider.core.naming import ANNOTATION_CONSUMED_BY_TRY, ANNOTATION_FIRST_TRY, ANNOTATION_SPEC_DIGEST
from kuberay_provider.core.resources import RAYCLUSTER

FAILED = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}
COMPLETE_BUT_STOPPED = {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}
SUCCEEDED = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
ENTRYPOINT = "python x.py"


class OneRayJobKube:
    """A namespace holding at most one RayJob; deleting it ends the watch with DELETED."""

    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.existing = existing
        self.calls: list[str] = []
        self.patches: list[dict[str, Any]] = []

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.existing

    def delete(self, kind: Any, namespace: str, name: str, *, propagation_policy: str) -> bool:
        self.calls.append(f"delete:{propagation_policy}")
        return True

    def watch(self, kind: Any, namespace: str, **query: Any) -> Iterator[WatchEvent]:
        gone, self.existing = self.existing, None
        yield WatchEvent("DELETED", gone or {})

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if self.existing is not None:  # as the API server: 409, nothing written
            raise AlreadyExistsError("exists", target=None, status=409)  # type: ignore[arg-type]
        self.calls.append("dry-run" if dry_run else "create")
        return manifest

    def patch(self, kind: Any, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.existing is None:
            raise NotFoundError(f"rayjobs {name} not found", target=None, status=404)  # type: ignore[arg-type]
        self.patches.append(body)
        return self.existing


def manifest_of_try(try_number: int | None, first_try: int | None = 1, entrypoint: str = ENTRYPOINT) -> dict[str, Any]:
    request = RayJobRequest(
        RunIdentity("dag", "task", "run-1"),
        spec_params={"entrypoint": entrypoint},
        try_number=try_number,
        first_try_number=first_try,
    )
    return request.manifest()


def created_by(
    try_number: int,
    status: dict[str, str],
    *,
    consumed_by: int | None = None,
    entrypoint: str = ENTRYPOINT,
    first_try: int = 1,
) -> dict[str, Any]:
    """The RayJob as an earlier try created it (spec digest stamped), with its status and consumption mark."""
    existing = {**with_spec_digest(manifest_of_try(try_number, first_try, entrypoint)), "status": status}
    if consumed_by is not None:
        existing["metadata"]["annotations"][ANNOTATION_CONSUMED_BY_TRY] = str(consumed_by)
    return existing


def launched(
    existing: dict[str, Any], try_number: int | None, first_try: int | None = 1, entrypoint: str = ENTRYPOINT
) -> tuple[Any, list[str]]:
    kube = OneRayJobKube(existing)
    launch = RayJobLifecycle(kube).create_or_attach(manifest_of_try(try_number, first_try, entrypoint))  # type: ignore[arg-type]
    return launch, kube.calls


REPLACED = ["delete:Foreground", "create"]

# (what the earlier try left, the asking try, its series' first try, expected: "reattach" | "replace")
DECISIONS = [
    pytest.param(created_by(1, RUNNING), 2, 1, "reattach", id="live, retry: follow it"),
    pytest.param(created_by(1, SUCCEEDED), 2, 1, "reattach", id="succeeded unreported (try died), retry: report it"),
    pytest.param(created_by(1, FAILED), 2, 1, "replace", id="failed, retry: run anew"),
    pytest.param(created_by(1, COMPLETE_BUT_STOPPED), 2, 1, "replace", id="stopped, retry: run anew"),
    pytest.param(created_by(2, FAILED), 2, 1, "reattach", id="failed, same try: re-attach"),
    pytest.param(
        created_by(1, SUCCEEDED, consumed_by=1),
        2,
        1,
        "reattach",
        id="consumed in this series, retry: the reporting try died before Airflow recorded it",
    ),
    pytest.param(created_by(1, SUCCEEDED, consumed_by=1), 2, 2, "replace", id="consumed, cleared: run anew"),
    pytest.param(created_by(1, FAILED, consumed_by=1), 2, 2, "replace", id="failed and consumed, cleared: run anew"),
    pytest.param(
        created_by(1, RUNNING, consumed_by=1), 5, 4, "replace", id="consumed, cleared several times: run anew"
    ),
    pytest.param(
        created_by(1, SUCCEEDED, consumed_by=1), 1, 1, "replace", id="consumed, run recreated (try 1 again): run anew"
    ),
    pytest.param(
        created_by(1, FAILED, consumed_by=1), 1, 1, "replace", id="failed and consumed, run recreated: run anew"
    ),
    pytest.param(created_by(1, SUCCEEDED, consumed_by=1), None, None, "replace", id="consumed, try unknown: run anew"),
    pytest.param(
        created_by(1, SUCCEEDED, consumed_by=1), 2, None, "reattach", id="consumed, series unknown: taken for a retry"
    ),
    pytest.param(
        created_by(1, SUCCEEDED), 3, 3, "reattach", id="unconsumed (no try ever reported it), cleared: report it"
    ),
    pytest.param(
        created_by(1, SUCCEEDED, entrypoint="python old.py"), 2, 1, "replace", id="spec changed, succeeded: run anew"
    ),
    pytest.param(
        created_by(1, RUNNING, entrypoint="python old.py"), 2, 1, "replace", id="spec changed, live: replace it"
    ),
    pytest.param(
        created_by(1, RUNNING, entrypoint="python old.py"), 1, 1, "replace", id="spec changed, same try: replace it"
    ),
]


@pytest.mark.parametrize(("existing", "try_number", "first_try", "expected"), DECISIONS)
def test_the_decision_table(existing: dict[str, Any], try_number: int | None, first_try: int | None, expected: str):
    launch, calls = launched(existing, try_number, first_try)
    if expected == "reattach":
        assert not launch.created and calls == []
    else:
        assert launch.created and calls == REPLACED


def test_a_failed_rayjob_is_replaced_as_failed_and_a_consumed_one_says_why():
    failed, calls = launched(created_by(1, FAILED), 2)
    assert failed.replaced and not failed.superseded and calls == REPLACED
    # An entrypoint templated with the try number: still "the failed earlier try's", not "another spec".
    failed_other_spec, _ = launched(
        created_by(1, FAILED, consumed_by=1, entrypoint="python x.py --try 1"), 2, entrypoint="python x.py --try 2"
    )
    assert failed_other_spec.replaced and not failed_other_spec.superseded
    cleared, _ = launched(created_by(1, SUCCEEDED, consumed_by=1), 2, first_try=2)
    assert not cleared.replaced and "reported its outcome before the task was cleared" in cleared.superseded
    changed, _ = launched(created_by(1, SUCCEEDED, entrypoint="python old.py"), 2)
    assert "spec differs" in changed.superseded


def test_a_rayjob_of_an_older_provider_counts_as_the_same_spec_and_unconsumed():
    older = created_by(1, SUCCEEDED, entrypoint="python old.py")
    del older["metadata"]["annotations"][ANNOTATION_SPEC_DIGEST]
    launch, calls = launched(older, 2)
    assert not launch.created and calls == []


def test_the_created_rayjob_records_its_spec_digest_and_series():
    launch, _ = launched(None, 3, first_try=3)  # type: ignore[arg-type]
    annotations = launch.manifest["metadata"]["annotations"]
    assert (
        annotations[ANNOTATION_SPEC_DIGEST] == rayjob_spec_digest(manifest_of_try(3))
        and annotations[ANNOTATION_FIRST_TRY] == "3"
    )


def test_the_spec_digest_leaves_out_what_changes_after_the_create_or_per_try():
    base = manifest_of_try(1)
    digest = rayjob_spec_digest(base)
    for field, value in (("suspend", True), ("jobId", "x-sdk")):
        assert rayjob_spec_digest({**base, "spec": {**base["spec"], field: value}}) == digest
    per_try = {META_KEY_ID: "k1", META_TRY: "1", META_PACKAGE: "p"}
    other_try = {**per_try, META_KEY_ID: "k2", META_TRY: "2"}
    function = {**base, "spec": {**base["spec"], "metadata": per_try}}
    assert rayjob_spec_digest(function) == rayjob_spec_digest({**base, "spec": {**base["spec"], "metadata": other_try}})
    assert rayjob_spec_digest(function) != rayjob_spec_digest(
        {**base, "spec": {**base["spec"], "metadata": {**per_try, META_PACKAGE: "q"}}}
    )
    assert rayjob_spec_digest(manifest_of_try(1, entrypoint="python y.py")) != digest
    assert rayjob_spec_digest(manifest_of_try(7, first_try=5)) == digest  # try annotations are not the spec


def test_mark_consumed_annotates_the_rayjob_with_the_try_and_tolerates_it_gone():
    kube = OneRayJobKube(created_by(1, SUCCEEDED))
    lifecycle = RayJobLifecycle(kube)  # type: ignore[arg-type]
    assert lifecycle.mark_consumed("default", "x", 3)
    assert kube.patches == [{"metadata": {"annotations": {ANNOTATION_CONSUMED_BY_TRY: "3"}}}]
    kube.existing = None
    assert not lifecycle.mark_consumed("default", "x", 3)


class WithClusters(OneRayJobKube):
    """Also RayClusters, by name."""

    def __init__(self, existing: dict[str, Any] | None, clusters: dict[str, dict[str, Any]]) -> None:
        super().__init__(existing)
        self.clusters = clusters

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.clusters.get(name) if kind is RAYCLUSTER else self.existing


HELD = {"metadata": {"name": "c-1"}}
GOING = {"metadata": {"name": "c-1", "deletionTimestamp": "2026-01-01T00:00:00Z"}}


@pytest.mark.parametrize(
    ("status", "clusters", "result_in_log", "expected"),
    [
        pytest.param(SUCCEEDED, {}, True, "replace", id="function, succeeded, cluster gone: run it again"),
        pytest.param(
            SUCCEEDED, {"c-1": GOING}, True, "replace", id="function, succeeded, cluster being deleted: run it again"
        ),
        pytest.param(
            SUCCEEDED, {"c-1": HELD}, True, "reattach", id="function, succeeded, cluster held: read the result"
        ),
        pytest.param(RUNNING, {}, True, "reattach", id="function, live: follow it"),
        pytest.param(
            SUCCEEDED,
            {},
            False,
            "reattach",
            id="script, succeeded, cluster gone: report it (the outcome is the status)",
        ),
    ],
)
def test_a_succeeded_rayjob_whose_result_went_with_its_cluster_is_run_anew(
    status: dict[str, str], clusters: dict[str, Any], result_in_log: bool, expected: str
) -> None:
    kube = WithClusters(created_by(1, {**status, "rayClusterName": "c-1"}), clusters)
    launch = RayJobLifecycle(kube).create_or_attach(manifest_of_try(2), result_in_log=result_in_log)  # type: ignore[arg-type]
    if expected == "reattach":
        assert not launch.created and kube.calls == []
    else:
        assert launch.created and kube.calls == REPLACED and not launch.replaced
        assert "its RayCluster default/c-1 is gone, and with it the Ray job's log" in launch.superseded
