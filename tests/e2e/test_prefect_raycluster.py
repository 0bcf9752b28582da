"""RayCluster per flow run from Prefect, end to end on the local control plane with the real local Ray:
create (ready), scale, two RayJobs on it by cluster_selector (the second fails), delete in ``finally``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def credentials(least_privilege_kubeconfig: Path) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    return KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(least_privilege_kubeconfig))


def test_a_flow_runs_jobs_on_its_own_cluster_and_deletes_it_though_a_job_failed(
    prefect_api: None, credentials: Any, kube: Any
) -> None:
    from prefect import flow

    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
    from kuberay_provider.core.spec import simple_cluster_spec
    from kuberay_provider.prefect import RayCluster, RayJob, create_raycluster, delete_raycluster, run_rayjob, scale_raycluster

    block = RayCluster(spec=simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1, max_workers=2), credentials=credentials)
    seen: dict[str, Any] = {}

    @flow(name="prefect-cluster-per-run")
    def per_run() -> None:
        cluster = create_raycluster(block)
        seen["cluster"] = cluster
        try:
            seen["scaled"] = scale_raycluster(block, cluster["name"], "workers", 2)
            job = dict(cluster_selector=cluster["name"], credentials=credentials, timeout=300)
            seen["first"] = run_rayjob(RayJob(entrypoint="python -c \"print('PREFECT-CLUSTER-FIRST')\"", **job))
            run_rayjob(RayJob(entrypoint="python -c \"raise SystemExit('PREFECT-CLUSTER-SECOND fails')\"", **job))
        finally:
            seen["deleted"] = delete_raycluster(block, cluster["name"])

    state = per_run(return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="PREFECT-CLUSTER-SECOND fails"):  # the second job's own failure
        state.result()
    cluster = seen["cluster"]
    assert cluster["created"] and cluster["state"] == "ready" and (seen["scaled"]["ready_workers"], seen["scaled"]["desired_workers"]) == (2, 2)
    assert seen["first"]["succeeded"] and seen["first"]["cluster_name"] == cluster["name"]
    assert kube.get(RAYJOB, "default", seen["first"]["rayjob_name"])["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["name"]}
    assert seen["deleted"] is True and kube.find(RAYCLUSTER, "default", cluster["name"]) is None
