"""A cleared or retried RayCluster create task: re-attach to the run's cluster unless its spec changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kuberay_provider.core.clusters import RayClusterLifecycle, RayClusterRequest, with_cluster_digest
from kuberay_provider.core.errors import KubeRayProviderError
from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.naming import ANNOTATION_SPEC_DIGEST
from kuberay_provider.core.spec import simple_cluster_spec


class OneClusterKube:
    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.existing, self.calls = existing, []

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.existing

    def delete(self, kind: Any, namespace: str, name: str, *, propagation_policy: str) -> bool:
        self.calls.append("delete")
        return True

    def watch(self, kind: Any, namespace: str, **query: Any) -> Iterator[WatchEvent]:
        gone, self.existing = self.existing, None
        yield WatchEvent("DELETED", gone or {})

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.calls.append("dry-run" if dry_run else "create")
        return manifest


def cluster(workers: int = 1, run_id: str = "run-1", queue: str | None = None) -> dict[str, Any]:
    spec = simple_cluster_spec(image="rayproject/ray:2.60.0", workers=workers)
    return RayClusterRequest(RunIdentity("dag", "create", run_id), spec=spec, queue_name=queue).manifest()


def attach(existing: dict[str, Any] | None, wanted: dict[str, Any]) -> tuple[bool, list[str]]:
    kube = OneClusterKube(existing)
    _, created = RayClusterLifecycle(kube).create_or_attach(wanted)  # type: ignore[arg-type]
    return created, kube.calls


def test_the_same_spec_re_attaches():
    assert attach(with_cluster_digest(cluster()), cluster()) == (False, [])


def test_another_spec_replaces_the_cluster():
    assert attach(with_cluster_digest(cluster(workers=1)), cluster(workers=3)) == (
        True,
        ["delete", "dry-run", "create"],
    )


def test_kueue_suspension_is_not_a_spec_change():
    admitted = with_cluster_digest(cluster(queue="team"))
    admitted["spec"]["suspend"] = False  # Kueue admitted it; the digest was taken at the create
    wanted = cluster(queue="team")
    assert wanted["spec"]["suspend"] is True and attach(admitted, wanted) == (False, [])
    assert (
        with_cluster_digest(wanted)["metadata"]["annotations"][ANNOTATION_SPEC_DIGEST]
        == with_cluster_digest({**wanted, "spec": {**wanted["spec"], "suspend": False}})["metadata"]["annotations"][
            ANNOTATION_SPEC_DIGEST
        ]
    )


def test_a_cluster_of_an_older_provider_re_attaches():
    assert attach(cluster(workers=1), cluster(workers=3)) == (False, [])


def test_a_cluster_of_another_run_is_refused():
    with pytest.raises(KubeRayProviderError, match="not created by this run"):
        attach(with_cluster_digest(cluster(run_id="run-2")), cluster())
