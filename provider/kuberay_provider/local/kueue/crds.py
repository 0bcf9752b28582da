"""Minimal CustomResourceDefinitions for Kueue's queue kinds (kueue.x-k8s.io/v1beta1).

Our own, small on purpose: the fields the stand-in reads are listed, the rest is kept as sent
(``x-kubernetes-preserve-unknown-fields``), so manifests written for a real Kueue apply unchanged.
"""

from __future__ import annotations

from typing import Any

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta1"
_OPEN_OBJECT: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(kind: str, plural: str, scope: str, short: list[str], columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
            },
            "scope": scope,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _OPEN_OBJECT,
                                "status": _OPEN_OBJECT,
                            },
                        }
                    },
                }
            ],
        },
    }


_PENDING = {"name": "Pending Workloads", "type": "integer", "jsonPath": ".status.pendingWorkloads"}
_ADMITTED = {"name": "Admitted Workloads", "type": "integer", "jsonPath": ".status.admittedWorkloads"}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KUEUE_CRDS: tuple[dict[str, Any], ...] = (
    _crd(
        "ClusterQueue",
        "clusterqueues",
        "Cluster",
        ["cq"],
        [
            {"name": "Cohort", "type": "string", "jsonPath": ".spec.cohort"},
            {"name": "Strategy", "type": "string", "jsonPath": ".spec.queueingStrategy", "priority": 1},
            _PENDING,
            _ADMITTED,
            _AGE,
        ],
    ),
    _crd(
        "LocalQueue",
        "localqueues",
        "Namespaced",
        ["lq", "queue", "queues"],
        [
            {"name": "ClusterQueue", "type": "string", "jsonPath": ".spec.clusterQueue"},
            _PENDING,
            _ADMITTED,
            _AGE,
        ],
    ),
    _crd("ResourceFlavor", "resourceflavors", "Cluster", ["flavor", "flavors", "rf"], [_AGE]),
)


def kueue_crds() -> list[dict[str, Any]]:
    """Fresh copies (the store keeps what it is given)."""
    import copy

    return [copy.deepcopy(crd) for crd in KUEUE_CRDS]
