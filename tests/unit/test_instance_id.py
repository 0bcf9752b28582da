"""Instance ids: several deployments sharing a namespace. Without one, names, keys and labels are exactly those
of before instance ids existed; with one, they are set apart, and every run selector picks only its own
instance's objects (checked on the local API server's own label-selector parsing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kuberay_provider.core.clusters import RayClusterLifecycle, RayClusterRequest
from kuberay_provider.core.errors import ConfigurationError
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.naming import (
    LABEL_INSTANCE,
    LABEL_RUN_KEY,
    MAX_RAYJOB_NAME,
    check_instance_id,
    is_dns1035_label,
    run_labels,
    run_selector,
)
from kuberay_provider.core.spec import simple_cluster_spec

RUN = "scheduled__2026-01-01T00:00:00+00:00"
CLUSTER = simple_cluster_spec(image="rayproject/ray:2.60.0")


def identity(instance: str = "", task: str = "score", map_index: int = -1) -> RunIdentity:
    return RunIdentity("nightly_scoring", task, RUN, map_index, instance)


def test_no_instance_id_keeps_the_names_keys_and_labels_of_before():
    # Computed by the code before instance ids existed: a RayJob it made must still be re-attached to.
    assert (identity().rayjob_name, identity().key) == ("nightly-scoring-score-86e9e24cab", "86e9e24cab")
    assert (identity(map_index=3).rayjob_name, identity(map_index=3).key) == (
        "nightly-scoring-score-f1a90ae83c",
        "f1a90ae83c",
    )
    assert (
        RayClusterRequest(identity(task="create_cluster")).cluster_name == "nightly-scoring-create-cluster-88cd9caed8"
    )
    assert LABEL_INSTANCE not in identity().labels
    assert run_labels("nightly_scoring", RUN) == {
        k: v for k, v in identity().labels.items() if k in ("kuberay-provider.io/owner", "kuberay-provider.io/run-id")
    }


def test_an_instance_id_sets_names_keys_and_labels_apart():
    plain, prod, qa = identity(), identity("prod"), identity("qa")
    assert len({plain.rayjob_name, prod.rayjob_name, qa.rayjob_name}) == 3 and len({plain.key, prod.key, qa.key}) == 3
    assert prod.rayjob_name.startswith("nightly-scoring-score-") and is_dns1035_label(prod.rayjob_name, MAX_RAYJOB_NAME)
    assert prod.rayjob_name.endswith(prod.key) and prod == identity("prod")  # stable: a retry finds it again
    assert prod.labels[LABEL_INSTANCE] == "prod" and prod.labels[LABEL_RUN_KEY] == prod.key
    clusters = {RayClusterRequest(identity(instance, task="create_cluster")).cluster_name for instance in ("", "prod")}
    assert len(clusters) == 2
    requests = [
        RayJobRequest(identity(instance), spec_params={"entrypoint": "python x.py", "ray_cluster_spec": CLUSTER})
        for instance in ("", "prod")
    ]
    assert requests[1].manifest()["metadata"]["labels"][LABEL_INSTANCE] == "prod"
    assert requests[0].submission_id != requests[1].submission_id  # on a shared cluster too


@pytest.mark.parametrize("value", ["prod", "staging-eu", "0", "a" * 63, " prod "])
def test_valid_instance_ids(value: str):
    assert (
        check_instance_id(value) == value.strip()
        and RunIdentity("d", "t", "r", instance=value).instance == value.strip()
    )


@pytest.mark.parametrize("value", ["Prod", "prod_1", "-prod", "prod-", "a" * 64, "pr od", "prod.eu"])
def test_invalid_instance_ids_are_refused_naming_the_field(value: str):
    with pytest.raises(
        ConfigurationError, match=r"instance_id=.* is not a valid instance id: use at most 63 lower-case"
    ):
        check_instance_id(value)
    with pytest.raises(ConfigurationError, match="instance="):
        RunIdentity("d", "t", "r", instance=value)


def test_selectors_ask_for_the_instance_label_or_its_absence():
    assert (
        run_selector("d", "r")
        == "kuberay-provider.io/owner=d,kuberay-provider.io/run-id=r,!kuberay-provider.io/instance"
    )
    assert run_selector("d", "r", "prod") == (
        "kuberay-provider.io/owner=d,kuberay-provider.io/run-id=r,kuberay-provider.io/instance=prod"
    )


def test_each_instance_cleans_up_only_its_own_objects_on_the_local_api_server(crds_dir: Path):
    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.resources import RAYCLUSTER, RAYJOB
    from kuberay_provider.local.plane import LocalControlPlane

    instances = ("", "prod", "qa")
    with LocalControlPlane(crds_dir=crds_dir, controller=False, tls=False) as plane, plane.api_client() as api_client:
        kube = RayObjectsClient(api_client)
        jobs: dict[tuple[str, str], str] = {}
        clusters: dict[str, str] = {}
        for instance in instances:
            for task in ("a", "b"):
                request = RayJobRequest(
                    RunIdentity("dag", task, "run-1", -1, instance),
                    namespace="default",
                    spec_params={"entrypoint": "python x.py", "ray_cluster_spec": CLUSTER},
                )
                jobs[(instance, task)] = kube.create(request.manifest())["metadata"]["name"]
            cluster = RayClusterRequest(RunIdentity("dag", "cluster", "run-1", -1, instance), spec=CLUSTER)
            clusters[instance] = kube.create(cluster.manifest())["metadata"]["name"]

        def left(kind: Any) -> set[str]:
            return {
                o["metadata"]["name"] for o in kube.list(kind, "default") if not o["metadata"].get("deletionTimestamp")
            }

        rayjobs, rayclusters = RayJobLifecycle(kube), RayClusterLifecycle(kube)
        assert rayjobs.delete_run("default", "dag", "run-1", ["a"], instance="prod") == [jobs[("prod", "a")]]
        assert sorted(rayjobs.delete_run("default", "dag", "run-1")) == sorted([jobs[("", "a")], jobs[("", "b")]])
        assert rayclusters.delete_run("default", "dag", "run-1", instance="qa") == [clusters["qa"]]
        assert rayclusters.delete_run("default", "dag", "run-1") == [clusters[""]]
        assert left(RAYJOB) == {jobs[("prod", "b")], jobs[("qa", "a")], jobs[("qa", "b")]}
        assert left(RAYCLUSTER) == {clusters["prod"]}
