"""Bad input, fuzzed: whatever a DAG author passes, the provider either creates a valid RayJob or refuses
with an error naming the field and the rule, never crashes, and never writes anything it refused.

Property-based (hypothesis) over the RayJob spec keywords with values of any JSON shape, and over raw
manifest text and bytes; the Kubernetes boundary is a recorder (nothing exists, every call is noted)."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kuberay_provider.airflow.operators import PERMANENT_ERRORS, RayJobOperator
from kuberay_provider.core.errors import ManifestError, ValidationError
from kuberay_provider.core.job_request import RAYJOB_KEYWORDS, RayJobRequest, RunIdentity
from kuberay_provider.core.job_runner import RayJobRunner
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.manifests import parse_documents
from kuberay_provider.core.validation import SchemaRegistry
from tests.conftest import CRDS_DIR
from tests.support.airflow_fakes import FakeTaskInstance, RecordingKube

SCHEMAS = SchemaRegistry.from_directory(CRDS_DIR) if CRDS_DIR.is_dir() else None
CLUSTER = {
    "headGroupSpec": {
        "rayStartParams": {},
        "template": {"spec": {"containers": [{"name": "head", "image": "rayproject/ray:2.60.0"}]}},
    }
}


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["", "-1", "yes", "InteractiveMode", "K8sJobMode", "DeleteCluster", "1Gi", "ray.io/cluster"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)
spec_keywords = st.dictionaries(st.sampled_from(sorted(RAYJOB_KEYWORDS)), json_values, max_size=4)


def launch(spec_params: dict[str, Any]) -> tuple[BaseException | None, RecordingKube]:
    kube = RecordingKube()
    runner = RayJobRunner(RayJobLifecycle(kube, schemas=SCHEMAS), status_line=lambda line: None)  # type: ignore[arg-type]
    params = {"entrypoint": "python job.py", "ray_cluster_spec": CLUSTER, **spec_params}
    try:
        request = RayJobRequest(RunIdentity("fuzz", "task", "run-1"), namespace="default", spec_params=params)
        runner.launch(request)
    except PERMANENT_ERRORS as refused:
        return refused, kube
    return None, kube


@pytest.mark.skipif(SCHEMAS is None, reason="KubeRay CRDs not found")
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_keywords)
def test_any_spec_keywords_create_a_valid_rayjob_or_are_refused_naming_the_field(spec_params: dict[str, Any]) -> None:
    refused, kube = launch(spec_params)
    if refused is None:
        assert kube.calls == ["create"]  # valid: created once (nothing existed: not looked for)
        return
    assert "create" not in kube.calls and "dry-run" not in kube.calls  # refused before any write
    if isinstance(refused, ValidationError):
        assert refused.errors and all(error.path and error.rule for error in refused.errors)
    else:
        assert str(refused)  # a TypeError / ValueError / ManifestError with a message


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_refused_as_a_manifest_error(data: bytes) -> None:
    try:
        documents = parse_documents(data)
    except ManifestError as refused:
        assert str(refused)
        return
    assert all(isinstance(document, dict) for document in documents)


BAD_MANIFESTS = {
    "malformed YAML": "apiVersion: ray.io/v1\nkind: RayJob\nspec: {entrypoint: [unclosed\n",
    "not a mapping": "- just\n- a list\n",
    "wrong kind": "apiVersion: ray.io/v1\nkind: RayCronJob\nmetadata: {name: x}\nspec: {entrypoint: python a.py}\n",
    "wrong apiVersion": "apiVersion: ray.io/v1alpha1\nkind: RayJob\nmetadata: {name: x}\nspec: {entrypoint: python a.py}\n",
    "another group": "apiVersion: batch/v1\nkind: Job\nmetadata: {name: x}\nspec: {}\n",
    "non-UTF-8": b"apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: caf\xe9}\n",
    "huge entrypoint": "apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: x}\nspec:\n  entrypoint: python -c 'print("
    + "1" * 2_000_000
    + ")'\n",
}


@pytest.mark.skipif(SCHEMAS is None, reason="KubeRay CRDs not found")
@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifests_given_to_the_operator_are_refused_before_anything_is_written(case: str, tmp_path: Path) -> None:
    text = BAD_MANIFESTS[case]
    kube = RecordingKube()
    runner = RayJobRunner(RayJobLifecycle(kube, schemas=SCHEMAS), status_line=lambda line: None)  # type: ignore[arg-type]
    rayjob: Any = text.decode("latin-1") if isinstance(text, bytes) else text
    if isinstance(text, bytes):  # bytes on disk: a DAG's templated file that is not UTF-8
        path = tmp_path / "job.yaml"
        path.write_bytes(text)
        rayjob = str(path)
    with pytest.raises(PERMANENT_ERRORS) as refused:
        operator = RayJobOperator(task_id="bad", rayjob=rayjob, ray_cluster_spec=CLUSTER)
        runner.launch(operator.build_request({"ti": FakeTaskInstance()}))
    assert str(refused.value)
    assert "create" not in kube.calls and "dry-run" not in kube.calls


@pytest.mark.skipif(SCHEMAS is None, reason="KubeRay CRDs not found")
def test_both_outcomes_of_the_property_exist():
    """The property above is not vacuous: a plain spec is created, a bad one refused with its path."""
    created, kube = launch({})
    assert created is None and kube.calls == ["create"]
    refused, kube = launch({"ttl_seconds_after_finished": -1})
    assert isinstance(refused, ValidationError) and kube.calls == []
    assert [error.path for error in refused.errors] == ["spec.ttlSecondsAfterFinished"]


@pytest.mark.skipif(SCHEMAS is None, reason="KubeRay CRDs not found")
def test_an_object_too_large_for_kubernetes_names_the_field_that_made_it_so():
    refused, kube = launch({"entrypoint": "python -c 'pass' " + "#" * 1_600_000})
    assert isinstance(refused, ValidationError) and kube.calls == []
    [error] = refused.errors
    assert (error.path, error.rule) == ("spec.entrypoint", "kubernetes:object-too-large")
