"""Where ``local up --crds`` finds KubeRay's CustomResourceDefinitions, for a user without this repository.

``--crds`` accepts what a user can get outside this project:

- a folder of CRD files, as the KubeRay operator Helm chart's ``crds/`` folder lays them out
  (``ray.io_rayjobs.yaml`` ...);
- the chart's root folder (``helm pull kuberay/kuberay-operator --version 1.7.0 --untar``): its ``crds/``
  folder is used, never its ``templates/`` (Helm templates, not YAML);
- one YAML or JSON file, including the ``kind: List`` that ``kubectl get crd ... -o yaml`` prints.

``prepare_crds`` reads the source, checks it holds KubeRay's ``ray.io`` CRDs, and writes them one file
each into a folder the plane installs from (the plane reads a flat folder of CRD files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

RAY_GROUP = "ray.io"
KUBERAY_VERSION = "v1.7.0"
CRD_SUFFIXES = (".yaml", ".yml", ".json")
# Set by the API server that served a `kubectl get crd -o yaml`; a create must not carry them.
SERVER_SET_METADATA = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes: the C parser if built

HOW_TO_GET_CRDS = f"""KubeRay's CRDs ({KUBERAY_VERSION}) can be had any of these ways:
  - from the KubeRay operator Helm chart:
      helm repo add kuberay https://ray-project.github.io/kuberay-helm/
      helm pull kuberay/kuberay-operator --version {KUBERAY_VERSION[1:]} --untar
      kuberay-provider local up --crds kuberay-operator/crds     (or --crds kuberay-operator)
  - the raw files (ray.io_rayjobs.yaml, ray.io_rayclusters.yaml, ray.io_rayservices.yaml) from
      https://github.com/ray-project/kuberay/tree/{KUBERAY_VERSION}/helm-chart/kuberay-operator/crds
  - from a cluster that runs KubeRay and that your kubeconfig reaches:
      kubectl get crd rayjobs.ray.io rayclusters.ray.io rayservices.ray.io -o yaml > kuberay-crds.yaml
      kuberay-provider local up --crds kuberay-crds.yaml"""


class CrdSourceError(Exception):
    """``--crds`` names nothing usable; the message says what was wrong and where to get the CRDs."""


def crd_files(source: Path) -> list[Path]:
    """The CRD files ``source`` stands for: itself, a folder's files, or a chart root's ``crds/`` files."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise CrdSourceError(f"--crds {source}: no such file or folder")
    folder = source / "crds" if (source / "crds").is_dir() else source
    return sorted(path for path in folder.iterdir() if path.is_file() and path.suffix in CRD_SUFFIXES)


def _documents(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".json":  # json parses in a tenth of YAML's time (and is what prepare_crds writes)
            loaded = [doc for doc in [json.loads(path.read_bytes())] if isinstance(doc, dict)]
        else:
            with path.open("rb") as stream:
                loaded = [doc for doc in yaml.load_all(stream, Loader=_YAML_LOADER) if isinstance(doc, dict)]
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise CrdSourceError(f"--crds: cannot read {path}: {exc}") from exc
    # `kubectl get crd a b -o yaml` prints one `kind: List` holding the objects.
    return [item for doc in loaded for item in ((doc.get("items") or []) if doc.get("kind") == "List" else [doc])]


def _as_created(crd: dict[str, Any], path: Path) -> dict[str, Any]:
    """The CRD as one would create it: without the status and metadata a serving API server added."""
    if not isinstance(crd.get("metadata"), dict) or not crd["metadata"].get("name"):
        raise CrdSourceError(f"--crds: a CustomResourceDefinition in {path} has no metadata.name")
    metadata = {key: value for key, value in crd["metadata"].items() if key not in SERVER_SET_METADATA}
    annotations = {key: value for key, value in (metadata.get("annotations") or {}).items() if key != LAST_APPLIED}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return {"apiVersion": crd.get("apiVersion"), "kind": crd["kind"], "metadata": metadata, "spec": crd.get("spec")}


def read_crds(source: Path | str) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in ``source``; raises CrdSourceError unless KubeRay's are among them."""
    source = Path(source).expanduser()
    files = crd_files(source)
    crds = [
        _as_created(doc, path)
        for path in files
        for doc in _documents(path)
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
    ]
    if not any((crd.get("spec") or {}).get("group") == RAY_GROUP for crd in crds):
        looked_in = ", ".join(str(path) for path in files[:5]) or "no .yaml, .yml or .json file"
        raise CrdSourceError(f"--crds {source}: no {RAY_GROUP} CustomResourceDefinition found (read: {looked_in})")
    return crds


def prepare_crds(source: Path | str, folder: Path) -> Path:
    """Read ``source`` and write its CRDs into ``folder``, one JSON file each; return ``folder``.

    Raises CrdSourceError (its message names the problem; add HOW_TO_GET_CRDS for the way out)."""
    crds = read_crds(source)
    if Path(source).expanduser().resolve() == folder.resolve():
        return folder  # already prepared (a detached plane is handed the prepared folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for stale in folder.glob("*.json"):
        stale.unlink()
    for crd in crds:
        (folder / f"{crd['metadata']['name']}.json").write_text(json.dumps(crd))
    return folder
