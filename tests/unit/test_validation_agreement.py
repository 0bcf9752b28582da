"""The provider's KubeRay rules and the local plane's own port of KubeRay's validation.go, side by side.

They were written separately on purpose: where they disagree, one of them misreads KubeRay. Every invalid
case of the provider's table (tests/unit/test_validation_rules.py) must be refused by the port too, except
the few where the provider is deliberately stricter than KubeRay (docs/validate.md says why); and a few
values KubeRay's Go parsers refuse must be refused by both.
"""

from __future__ import annotations

import pytest

from kuberay_provider.core.validation import validate_manifest
from tests.unit.test_local_validation_port import _defaulted, error_of
from tests.unit.test_validation_rules import INVALID, load_sample, mutate

# The provider refuses these although KubeRay accepts them; each is documented in docs/validate.md.
DELIBERATELY_STRICTER = {
    "kuberay:cluster-selector-with-cluster-spec",  # KubeRay silently ignores the rayClusterSpec
    "kuberay:upgrade-strategy-not-allowed",  # KubeRay accepts the RayJob, then refuses the cluster it makes
    "kuberay:unknown-submission-mode",  # no enum in the CRD: a typo would silently run as another mode
    "kuberay:worker-group-name-duplicate",  # only KubeRay's optional webhook refuses it
}

KUBERAY_CASES = [case for case in INVALID if case[4].startswith("kuberay:")]


@pytest.mark.parametrize(
    ("case_id", "sample", "changes", "path", "rule"), KUBERAY_CASES, ids=[c[0] for c in KUBERAY_CASES]
)
def test_what_the_provider_refuses_kuberay_refuses(
    case_id: str, sample: str, changes: dict, path: str, rule: str
) -> None:
    manifest = mutate(load_sample(sample), changes)
    assert rule in {e.rule for e in validate_manifest(manifest)}
    emulated = error_of(_defaulted(manifest))
    if rule in DELIBERATELY_STRICTER:
        assert emulated is None, f"KubeRay refuses {case_id} too: the provider is not stricter here ({emulated})"
    else:
        assert emulated is not None, (
            f"the local plane's port of KubeRay accepts {case_id}, which the provider refuses as {rule}"
        )


@pytest.mark.parametrize(
    ("sample", "changes"),
    [
        ("ray-service.sample.yaml", {"metadata.annotations": {"ray.io/initializing-timeout": "0.5ns"}}),  # Go: 0
        (
            "ray-service.sample.yaml",
            {"metadata.annotations": {"ray.io/initializing-timeout": "99999999999h"}},
        ),  # overflow
        (
            "ray-service.sample.yaml",
            {"metadata.annotations": {"ray.io/initializing-timeout": "٣٠٠"}},
        ),  # not ASCII digits
        ("ray-cluster.sample.yaml", {"spec.authOptions": {"mode": "token"}, "spec.rayVersion": "02.52.0"}),
        ("ray-cluster.sample.yaml", {"spec.authOptions": {"mode": "token"}, "spec.rayVersion": "2.52.0\n"}),
        (
            "ray-cluster.sample.yaml",
            {
                "metadata.annotations": {"ray.io/external-storage-namespace": "ns"},
                "spec.gcsFaultToleranceOptions": {"redisAddress": "redis:6379"},
            },
        ),
    ],
)
def test_values_kuberay_refuses_are_refused_by_both(sample: str, changes: dict) -> None:
    manifest = mutate(load_sample(sample), changes)
    assert error_of(_defaulted(manifest)) is not None  # what KubeRay's Go says
    assert [e for e in validate_manifest(manifest) if e.rule.startswith("kuberay:")], "the provider accepts it"
