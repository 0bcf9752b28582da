"""A RayCluster per flow run from Prefect, end to end on the local control plane with the real local Ray:
docs/prefect.md's own flow runs, creating (ready) and scaling its cluster, running two RayJobs on it by
cluster_selector (the second fails) and deleting the cluster in its ``finally``."""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.cluster_under_test import JOBS_NAMESPACE
from tests.unit.test_docs_snippets import page_snippets, run_snippet

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def credentials(least_privilege_kubeconfig: Path) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))


@pytest.mark.local_only("the docs' flow exactly as printed, which runs in the default namespace")
def test_the_docs_flow_runs_jobs_on_its_own_cluster_and_deletes_it_though_a_job_failed(
    prefect_api: None, credentials: Any, kube: Any
) -> None:
    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB

    [snippet] = [body for body in page_snippets("prefect.md") if "create_raycluster(cluster)" in body]
    flows = run_snippet(snippet, {"credentials": credentials}, "docs/prefect.md RayCluster snippet")
    started = time.time()
    state = flows["train_on_own_cluster"](
        [
            "python -c \"print('PREFECT-CLUSTER-FIRST')\"",
            "python -c \"raise SystemExit('PREFECT-CLUSTER-SECOND fails')\"",
        ],
        return_state=True,
    )
    assert state.is_failed()
    with pytest.raises(Exception, match="PREFECT-CLUSTER-SECOND fails"):  # the second job's own failure
        state.result()

    def created_by_this_run(rayjob: dict[str, Any]) -> bool:
        stamp = rayjob["metadata"]["creationTimestamp"]
        return "clusterSelector" in rayjob["spec"] and calendar.timegm(
            time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
        ) >= int(started)

    jobs = sorted(
        (rayjob for rayjob in kube.list(RAYJOB, JOBS_NAMESPACE) if created_by_this_run(rayjob)),
        key=lambda rayjob: rayjob["metadata"]["creationTimestamp"],
    )
    assert [rayjob["status"]["jobStatus"] for rayjob in jobs] == ["SUCCEEDED", "FAILED"]
    [cluster] = {
        rayjob["spec"]["clusterSelector"]["ray.io/cluster"] for rayjob in jobs
    }  # both on the run's one cluster
    assert cluster.startswith("train-on-own-cluster-") and kube.find(RAYCLUSTER, JOBS_NAMESPACE, cluster) is None
