"""HTTP errors → provider errors: 401/403/404/409/422, through both real clients, and the mapping
itself. No message, repr or chained exception text may contain the bearer token."""

from __future__ import annotations

import json
import traceback
from typing import Any

import pytest

from kuberay_provider.core.errors import FieldError, KubeRayProviderError, ValidationError
from kuberay_provider.core.kube.api_requests import Target
from kuberay_provider.core.kube.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    KubeApiError,
    NotFoundError,
    UnauthorizedError,
    error_from_response,
    redact,
)
from kuberay_provider.core.resources import RAYJOB, RayKind
from tests.support.fake_apiserver import FakeApiServer
from tests.support.kube_fixtures import *  # noqa: F403 - fixtures
from tests.support.kube_fixtures import rayjob

JOB_TARGET = Target("create", "rayjobs.ray.io", "team", "job-a")


def assert_token_free(exc: BaseException, token: str) -> None:
    rendered = "".join(traceback.format_exception(exc))
    assert token not in rendered
    assert token not in repr(exc)


async def test_already_exists(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("job-a"))

    expected = "rayjobs.ray.io 'job-a' already exists in namespace 'default'"
    with pytest.raises(AlreadyExistsError, match=expected) as caught:
        await kube.create(rayjob("job-a"))

    assert caught.value.status == 409
    assert caught.value.__cause__ is not None  # the official client's exception is chained
    assert len(apiserver.requests_to("POST")) == 2  # a plain 409 is not retried
    assert_token_free(caught.value, apiserver.token)


async def test_not_found(kube: Any, apiserver: FakeApiServer) -> None:
    with pytest.raises(NotFoundError, match="rayjobs.ray.io 'ghost' was not found in namespace 'default'"):
        await kube.get(RAYJOB, "default", "ghost")


async def test_not_found_for_a_resource_type_the_server_does_not_serve(kube: Any) -> None:
    unserved = RayKind("RayThing", "raythings", "raythings.ray.io")

    with pytest.raises(NotFoundError, match="does not serve raythings.ray.io; is its CustomResourceDefinition"):
        await kube.list(unserved, "default")


async def test_forbidden_names_verb_resource_and_namespace(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.call(lambda store: store.forbidden.add(("create", "rayjobs", "locked")))

    with pytest.raises(ForbiddenError) as caught:
        await kube.create(rayjob("job-a", namespace="locked"))

    message = str(caught.value)
    assert "the credentials in use may not create rayjobs.ray.io in namespace 'locked'" in message
    assert "missing RBAC permission: verb 'create' on resource 'rayjobs' in API group 'ray.io'" in message
    assert '{apiGroups: ["ray.io"], resources: ["rayjobs"], verbs: ["create"]} to a Role in that namespace' in message
    assert len(apiserver.requests_to("POST")) == 1
    assert_token_free(caught.value, apiserver.token)


async def test_unauthorized_never_shows_the_token(make_kube: Any, apiserver: FakeApiServer) -> None:
    wrong_token = "wrong-token-that-must-stay-secret-1234"
    kube = await make_kube(token=wrong_token)

    expected = "401 Unauthorized.*get rayjobs.ray.io in namespace 'default'"
    with pytest.raises(UnauthorizedError, match=expected) as caught:
        await kube.get(RAYJOB, "default", "job-a")

    assert_token_free(caught.value, wrong_token)
    assert_token_free(caught.value, apiserver.token)


async def test_invalid_carries_field_errors(kube: Any, apiserver: FakeApiServer) -> None:
    manifest = rayjob("Bad_Name")
    del manifest["spec"]

    with pytest.raises(InvalidError) as caught:
        await kube.create(manifest, dry_run=True)

    error = caught.value
    assert isinstance(error, ValidationError) and isinstance(error, KubeApiError)
    assert [(e.path, e.rule) for e in error.errors] == [
        ("metadata.name", "server:FieldValueInvalid"),
        ("spec", "server:FieldValueRequired"),
    ]
    assert error.status == 422
    assert "rayjobs.ray.io 'Bad_Name' in namespace 'default' is invalid (2 problem(s))" in str(error)
    assert_token_free(error, apiserver.token)


async def test_stale_resource_version_is_a_conflict(kube: Any) -> None:
    created = await kube.create(rayjob("job-c"))
    await kube.patch(RAYJOB, "default", "job-c", {"spec": {"suspend": True}})

    stale = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "spec": {"suspend": False}}
    with pytest.raises(ConflictError, match="stale resourceVersion"):
        await kube.patch(RAYJOB, "default", "job-c", stale)


async def test_bad_request(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.inject("400")

    with pytest.raises(BadRequestError, match="rejected the request to create rayjobs.ray.io 'job-x'"):
        await kube.create(rayjob("job-x"))

    assert len(apiserver.requests_to("POST")) == 1


# -- the mapping itself ----------------------------------------------------------------------------


def _status(code: int, reason: str, message: str = "m", **details: Any) -> dict[str, Any]:
    status = {"kind": "Status", "apiVersion": "v1", "code": code, "reason": reason, "message": message}
    return {**status, "details": details}


def test_every_error_is_a_provider_error() -> None:
    for code in (400, 401, 403, 404, 409, 410, 418, 422, 500):
        assert isinstance(error_from_response(code, "", _status(code, "X"), JOB_TARGET), KubeRayProviderError)


def test_invalid_without_causes_still_has_one_field_error() -> None:
    error = error_from_response(422, "", _status(422, "Invalid", "spec: bad"), JOB_TARGET)

    assert isinstance(error, InvalidError)
    assert error.errors == [FieldError("<object>", "server:Invalid", "spec: bad")]


def test_causes_from_a_body_given_as_bytes() -> None:
    field = "spec.rayClusterSpec.workerGroupSpecs[0].replicas"
    causes = [{"field": field, "reason": "FieldValueInvalid", "message": "m"}]
    body = json.dumps(_status(422, "Invalid", causes=causes)).encode()

    error = error_from_response(422, "Unprocessable Entity", body, JOB_TARGET)

    assert isinstance(error, InvalidError)
    assert error.errors[0].path == "spec.rayClusterSpec.workerGroupSpecs[0].replicas"


def test_cluster_scoped_targets_say_so() -> None:
    error = error_from_response(403, "", _status(403, "Forbidden"), Target("get", "customresourcedefinitions", None))

    assert "may not get customresourcedefinitions at cluster scope" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abc.def-123",
        'headers {"authorization": "Bearer abc.def-123"}',
        "token=abc.def-123",
        "Basic abc.def-123",
    ],
)
def test_redact_removes_credentials(text: str) -> None:
    assert "abc.def-123" not in redact(text)
    assert "<redacted>" in redact(text)


def test_server_text_is_redacted_in_messages() -> None:
    echoed = _status(403, "Forbidden", "proxy saw Authorization: Bearer leaked-token-999")

    error = error_from_response(403, "", echoed, JOB_TARGET)

    assert "leaked-token-999" not in str(error)


def test_a_403_from_the_service_proxy_names_the_services_proxy_rule() -> None:
    """Ray's own words for a refused request, on an endpoint behind the API server's service proxy."""
    from kuberay_provider.core.ray_jobs import DashboardEndpoint, RayJobsClient, RayJobsError

    class RefusingClient:
        def get_job_info(self, job_id: str) -> Any:
            raise RuntimeError('Request failed with status code 403: {"reason": "Forbidden"}.')

        submit_job = get_job_info

    endpoint = DashboardEndpoint.direct("https://kube.test/api/v1/namespaces/ml/services/head:dashboard/proxy")
    jobs = RayJobsClient(endpoint, client_factory=lambda _: RefusingClient())  # type: ignore[arg-type,return-value]
    with pytest.raises(RayJobsError) as read:
        jobs.find("nightly-1")
    assert "refused the service proxy in namespace 'ml'" in str(read.value)
    assert '{apiGroups: [""], resources: ["services/proxy"], verbs: ["get"]}' in str(read.value)
    direct = RayJobsClient(DashboardEndpoint.direct("http://head:8265"), client_factory=lambda _: RefusingClient())  # type: ignore[arg-type,return-value]
    with pytest.raises(RayJobsError, match="the Ray dashboard refused these credentials"):
        direct.find("nightly-1")
