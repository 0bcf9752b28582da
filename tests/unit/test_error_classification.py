"""Errors are classified once (``core.errors``): Airflow fails at once and Prefect spends no retry on the
same permanent errors, all of them the provider's own types; and a Jobs API "not found" is the HTTP status
404, whatever the answer's text says (a real HTTP server answers, not a mock)."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import ray
from airflow.sdk.exceptions import AirflowFailException
from prefect.states import Failed

from kuberay_provider.airflow.operators import common as airflow_common
from kuberay_provider.airflow.operators.common import as_airflow_errors
from kuberay_provider.core import errors
from kuberay_provider.core.clusters import RayClusterLifecycle, RayClusterRequest, with_cluster_digest
from kuberay_provider.core.errors import ManifestError, NameTakenError, ValidationError, is_permanent
from kuberay_provider.core.function_keys import ForeignRayJob
from kuberay_provider.core.functions import VersionMismatch
from kuberay_provider.core.job_request import RunIdentity
from kuberay_provider.core.lifecycle import ClusterNotFoundError, RayJobTimeout
from kuberay_provider.core.ray_jobs import DashboardEndpoint, RayJobNotFound, RayJobsClient, RayJobsError
from kuberay_provider.core.spec import simple_cluster_spec
from kuberay_provider.local.ray_backend.base import BackendError
from kuberay_provider.local.ray_backend.local import LocalRayBackend
from kuberay_provider.prefect import tasks as prefect_tasks
from kuberay_provider.prefect.tasks import is_retriable

# -- one classification, shared ----------------------------------------------------------------------------


def fails_at_once_in_airflow(error: Exception) -> bool:
    try:
        with as_airflow_errors():
            raise error
    except AirflowFailException:
        return True
    except Exception:
        return False
    raise AssertionError("as_airflow_errors swallowed the error")


def retried_by_prefect(error: Exception) -> bool:
    return is_retriable(None, None, Failed(data=error))


SAMPLES: list[Exception] = [
    ValidationError([], object_name="RayJob ml/x"),
    ManifestError("not YAML"),
    NameTakenError("taken"),
    ClusterNotFoundError("no cluster"),
    VersionMismatch("py3.9 vs py3.12"),
    ForeignRayJob("not this run's job"),
    RayJobTimeout("too slow", None),
    RayJobsError("dashboard unreachable"),
    RuntimeError("connection reset"),
    TypeError("unsupported operand type(s)"),
    ValueError("could not convert string to float"),
    KeyError("x"),
]


def test_airflow_and_prefect_share_core_s_one_list_of_permanent_errors() -> None:
    assert airflow_common.PERMANENT_ERRORS is errors.PERMANENT_ERRORS
    assert prefect_tasks.PERMANENT_ERRORS is errors.PERMANENT_ERRORS
    assert all(issubclass(kind, errors.KubeRayProviderError) for kind in errors.PERMANENT_ERRORS)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda error: type(error).__name__)
def test_airflow_and_prefect_classify_every_error_alike(error: Exception) -> None:
    permanent = is_permanent(error)
    assert fails_at_once_in_airflow(error) is permanent
    assert retried_by_prefect(error) is not permanent


@pytest.mark.parametrize(
    "error",
    [
        TypeError("unsupported operand type(s) for +: 'int' and 'str'"),
        ValueError("bad float"),
        RuntimeError("connection reset by peer"),
        RayJobsError("dashboard unreachable"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_prefect_retries_errors_of_user_code_and_transient_ones(error: Exception) -> None:
    assert retried_by_prefect(error)
    assert not is_permanent(error)


def test_what_a_retry_cannot_fix_is_permanent() -> None:
    for error in (VersionMismatch("py"), ForeignRayJob("x"), NameTakenError("x"), ClusterNotFoundError("x")):
        assert is_permanent(error) and not retried_by_prefect(error) and fails_at_once_in_airflow(error)


# -- a RayCluster name clash is as permanent as a RayJob one -------------------------------------------------


class OneClusterKube:
    """A namespace holding one RayCluster of the wanted name."""

    def __init__(self, existing: dict[str, Any]) -> None:
        self.existing, self.writes = existing, []

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.existing

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.writes.append("create")
        return manifest

    def delete(self, kind: Any, namespace: str, name: str, *, propagation_policy: str) -> bool:
        self.writes.append("delete")
        return True


def raycluster(run_id: str) -> dict[str, Any]:
    spec = simple_cluster_spec(image="rayproject/ray:2.60.0", workers=1)
    return RayClusterRequest(RunIdentity("dag", "create", run_id), name="shared", spec=spec).manifest()


def test_a_raycluster_of_another_run_is_a_name_clash_no_retry_can_fix() -> None:
    kube = OneClusterKube(with_cluster_digest(raycluster("run-2")))
    with pytest.raises(NameTakenError, match="not created by this run.*choose another name") as clash:
        RayClusterLifecycle(kube).create_or_attach(raycluster("run-1"))  # type: ignore[arg-type]
    assert kube.writes == []
    assert fails_at_once_in_airflow(clash.value)
    assert not retried_by_prefect(clash.value)


# -- user mistakes: permanent provider errors, still the ValueError / TypeError callers caught --------------


def test_mistakes_in_a_task_s_arguments_are_permanent_and_keep_their_builtin_kind() -> None:
    from kuberay_provider.core.cleanup import cleanup_spec_fields
    from kuberay_provider.core.functions import check_result_format
    from kuberay_provider.core.job_request import RayJobRequest
    from kuberay_provider.core.services import rayservice_manifest
    from kuberay_provider.core.spec import RAYJOB, build_manifest

    identity = RunIdentity("dag", "task", "run-1")
    mistakes: list[tuple[Any, type[Exception]]] = [
        (lambda: RayJobRequest(identity, spec_params={"entry_point": "python x.py"}), TypeError),
        (lambda: RayJobRequest(identity, spec_params={"entrypoint": "python x.py"}, admission_timeout=-1), ValueError),
        (
            lambda: RayJobRequest(identity, spec_params={"entrypoint": "python x.py"}, submit_via="ray-client"),
            ValueError,
        ),
        (lambda: build_manifest(RAYJOB, "x", "ml", runtime_env={"pip": []}, runtime_env_yaml="pip: []"), TypeError),
        (lambda: build_manifest(RAYJOB, "x", "ml", runtime_env=["pip"]), ValueError),
        (lambda: cleanup_spec_fields("sometimes"), ValueError),
        (lambda: check_result_format("xml"), ValueError),
        (lambda: rayservice_manifest(None, None), ValueError),
    ]
    for make, builtin in mistakes:
        with pytest.raises(errors.ConfigurationError) as refused:
            make()
        assert isinstance(refused.value, builtin) and is_permanent(refused.value)


# -- "not found" is the status code ----------------------------------------------------------------------------


class JobsAPI(BaseHTTPRequestHandler):
    """A Ray dashboard whose Jobs API answers every job request with ``answer`` (status, body)."""

    answer: tuple[int, str] = (200, "{}")

    def _reply(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/version":
            self._reply(
                200,
                json.dumps({"version": "4", "ray_version": ray.__version__, "ray_commit": "x", "session_name": "s"}),
            )
        else:
            self._reply(*type(self).answer)

    do_POST = do_GET
    do_DELETE = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jobs_api() -> Iterator[tuple[str, type[JobsAPI]]]:
    handler = type("Answering", (JobsAPI,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


MISLEADING = [  # (status, body): the text speaks of 404 / not found, the status says something else
    (500, "upstream answered 404: Job nightly-1 does not exist in the GCS cache (not found)"),
    (502, "<html>404 page not found</html>"),
    (503, "no endpoints available for service head-svc: not found"),
]


@pytest.mark.parametrize("status,body", MISLEADING)
def test_an_error_that_merely_mentions_404_is_not_a_missing_job(
    jobs_api: tuple[str, type[JobsAPI]], status: int, body: str
) -> None:
    url, handler = jobs_api
    handler.answer = (status, body)
    jobs = RayJobsClient(DashboardEndpoint.direct(url))
    with pytest.raises(RayJobsError) as read:
        jobs.find("nightly-1")
    assert not isinstance(read.value, RayJobNotFound)
    with pytest.raises(RayJobsError) as logs:
        jobs.logs("nightly-1")
    assert not isinstance(logs.value, RayJobNotFound)
    with pytest.raises(RayJobsError):
        jobs.stop("nightly-1")


@pytest.mark.parametrize("body", ["", "nope", '{"detail": "gone"}'])
def test_a_404_is_a_missing_job_whatever_its_text(jobs_api: tuple[str, type[JobsAPI]], body: str) -> None:
    url, handler = jobs_api
    handler.answer = (404, body)
    jobs = RayJobsClient(DashboardEndpoint.direct(url))
    assert jobs.find("nightly-1") is None
    assert jobs.stop("nightly-1") is False
    with pytest.raises(RayJobNotFound):
        jobs.logs("nightly-1")


async def test_the_local_ray_backend_reads_not_found_from_the_status_too(
    jobs_api: tuple[str, type[JobsAPI]], tmp_path: Path
) -> None:
    url, handler = jobs_api
    backend = LocalRayBackend(work_dir=tmp_path, dashboard_url=url, start_timeout=10)
    await backend.start()
    try:
        handler.answer = (404, "nope")
        assert await backend.job_info("ml", "c1", "nightly-1") is None
        assert await backend.stop_job("ml", "c1", "nightly-1") is False
        handler.answer = MISLEADING[0]
        with pytest.raises(BackendError):
            await backend.job_info("ml", "c1", "nightly-1")
        with pytest.raises(BackendError):
            await backend.stop_job("ml", "c1", "nightly-1")
    finally:
        await backend.close()
