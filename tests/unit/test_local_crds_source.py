"""``local up --crds`` for a user without this repository: KubeRay's CRDs as the Helm chart lays them out
(its root folder or its ``crds/``), or as ``kubectl get crd -o yaml`` prints them; and, when ``--crds``
holds none, a message saying where to get them instead of a traceback."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kuberay_provider.local.crds_source import read_crds
from tests.support.local_cli import run_local_cli

pytestmark = pytest.mark.timeout(120)

RAY_CRDS = {"rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"}
# The CRDs are megabytes of YAML: libyaml's parser and emitter where PyYAML has them.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@pytest.fixture
def helm_chart(tmp_path: Path, crds_dir: Path) -> Path:
    """``helm pull kuberay/kuberay-operator --untar``'s layout: crds/ray.io_*.yaml beside Helm templates."""
    chart = tmp_path / "kuberay-operator"
    (chart / "crds").mkdir(parents=True)
    for crd in sorted(crds_dir.glob("ray.io_*.yaml")):
        shutil.copy(crd, chart / "crds" / crd.name)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: kuberay-operator\nversion: 1.7.0\n")
    (chart / "templates").mkdir()
    (chart / "templates" / "deployment.yaml").write_text("{{- if .Values.enabled }}\nkind: [not yaml\n{{- end }}\n")
    return chart


def run_local(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_local_cli(tmp_path / "local", tmp_path, *args, timeout=90)


def test_local_up_installs_kuberay_crds_from_the_helm_charts_folder(tmp_path: Path, helm_chart: Path) -> None:
    import kubernetes.client
    import kubernetes.config

    started = run_local(tmp_path, "up", "--detach", "--no-controller", "--crds", str(helm_chart))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        api = kubernetes.config.new_client_from_config(config_file=str(tmp_path / "local" / "kubeconfig"))
        with api:
            installed = kubernetes.client.ApiextensionsV1Api(api).list_custom_resource_definition()
            names = {crd.metadata.name for crd in installed.items}
            rayjobs = kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
                "ray.io", "v1", "default", "rayjobs"
            )
    finally:
        stopped = run_local(tmp_path, "down")
    assert names >= RAY_CRDS
    assert rayjobs["items"] == []
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_kubectl_get_crd_output_is_read_as_the_crds_to_create(tmp_path: Path, helm_chart: Path) -> None:
    """`kubectl get crd A B -o yaml` prints one `kind: List`, with the status and metadata the server set."""
    served = []
    for path in sorted((helm_chart / "crds").glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=LOADER)
        crd["metadata"] |= {"resourceVersion": "812", "uid": "0f1e", "generation": 1, "creationTimestamp": "2026"}
        crd["status"] = {"acceptedNames": crd["spec"]["names"], "storedVersions": ["v1"]}
        served.append(crd)
    listing = tmp_path / "kuberay-crds.yaml"
    listing.write_text(yaml.dump({"apiVersion": "v1", "kind": "List", "items": served}, Dumper=DUMPER))

    crds = read_crds(listing)

    assert {crd["metadata"]["name"] for crd in crds} == RAY_CRDS
    assert all("status" not in crd and "resourceVersion" not in crd["metadata"] for crd in crds)
    assert {crd["metadata"]["name"] for crd in read_crds(helm_chart / "crds")} == RAY_CRDS


def no_ray_crds(tmp_path: Path) -> Path:
    folder = tmp_path / "not-kuberay"
    folder.mkdir()
    (folder / "configmap.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    return folder


@pytest.mark.parametrize("source", ["missing", "no-ray-crds"])
def test_local_up_without_usable_crds_says_where_to_get_them(tmp_path: Path, source: str) -> None:
    crds = tmp_path / "nowhere" if source == "missing" else no_ray_crds(tmp_path)

    result = run_local(tmp_path, "up", "--detach", "--no-controller", "--crds", str(crds))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    expected = "no such file or folder" if source == "missing" else "no ray.io CustomResourceDefinition found"
    assert f"error: --crds {crds}: {expected}" in result.stderr
    assert "helm pull kuberay/kuberay-operator --version 1.7.0 --untar" in result.stderr
    assert "kubectl get crd rayjobs.ray.io rayclusters.ray.io rayservices.ray.io -o yaml" in result.stderr
    assert not (tmp_path / "local" / "state.json").exists()  # no plane was started
