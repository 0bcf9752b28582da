"""A function's result is accepted only from the run that asked for it: forged marker lines, a job someone
else submitted under the task's submission id, and a failed job never make the worker unpickle anything;
a retried try re-attaching to the earlier try's job (in another process) still verifies its result.

The Ray job is the shipped package run in a subprocess, as the cluster would run it; the Jobs API in
front of it is a stand-in that serves its log and the metadata the submission would have carried."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kuberay_provider.core import function_keys
from kuberay_provider.core.function_keys import (
    META_KEY_ID,
    META_PACKAGE,
    META_TRY,
    SECRET_ENV,
    SECRET_FILE_ENV,
    ForeignRayJob,
    FunctionSecretError,
    TryKey,
    job_metadata,
    worker_secret,
)
from kuberay_provider.core.function_runs import FunctionRun
from kuberay_provider.core.functions import FunctionCall, FunctionResultMissing, RemoteFunctionError, shipped
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome, RayJobRunner
from kuberay_provider.core.ray_jobs import RayJobInfo
from kuberay_provider.core.status import JobStatus

SECRET = "unit-test-secret-of-the-workers-0123456789"
RUN = RunIdentity("nightly", "score", "scheduled__2026-01-01")


class Planted:
    """Unpickling this runs ``open(path, "w")``: what a forged result would do on the worker."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def forge_and_die(path: str, then: str) -> None:
    """A function that prints untrusted data imitating a result marker, then dies without returning."""
    evil = base64.b64encode(pickle.dumps(Planted(path))).decode()
    print(f"KUBERAY-FUNCTION:result:{evil}", flush=True)  # the format without an authenticator
    print(f"KUBERAY-FUNCTION:result:{'ab' * 32}:{evil}", flush=True)  # with a made-up one
    if then == "raise":
        raise ValueError("E-FORGED then failed")
    if then == "return":
        return None
    os._exit(0 if then == "exit0" else 1)


def square(value: int) -> int:
    return value * value


class JobsStandIn:
    """The Jobs API of the job's cluster: its log, and what ``get_job_info`` reports of it."""

    def __init__(self, log: str, metadata: Mapping[str, str] | None, entrypoint: str) -> None:
        self.log, self.details = log, SimpleNamespace(metadata=dict(metadata or {}), entrypoint=entrypoint)
        self.log_reads = 0

    @property
    def client(self) -> JobsStandIn:
        return self

    def info(self, job_id: str) -> RayJobInfo:
        return RayJobInfo(job_id, JobStatus.SUCCEEDED)

    def get_job_info(self, job_id: str) -> SimpleNamespace:
        return self.details

    def logs(self, job_id: str) -> str:
        self.log_reads += 1
        return self.log


class LifecycleStandIn:
    def __init__(self, jobs: JobsStandIn) -> None:
        self.jobs = jobs
        self.kube = SimpleNamespace(
            get=lambda *args: {"metadata": {"name": "nightly-score", "namespace": "ns"}, "status": {}}
        )

    def rayjob_jobs_client(self, state: Any) -> JobsStandIn:
        return self.jobs


def run_job(call: FunctionCall, key: TryKey) -> tuple[str, dict[str, str], str]:
    """(the job's log, its metadata, its entrypoint), the package run as the cluster would run it."""
    with shipped(call, key) as shipment:
        done = subprocess.run(
            [sys.executable, "-m", shipment.package],
            cwd=Path(shipment.folder).parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return "Ray job starting\n" + done.stdout + done.stderr, dict(shipment.metadata), shipment.entrypoint


def reading(
    jobs: JobsStandIn, try_number: int = 1, result_format: str = "pickle"
) -> tuple[FunctionRun, RayJobRequest, list[str]]:
    warned: list[str] = []
    runner = RayJobRunner(LifecycleStandIn(jobs), status_line=lambda line: None)  # type: ignore[arg-type]
    request = RayJobRequest(RUN, namespace="ns", spec_params={"entrypoint": "x"}, try_number=try_number)
    return FunctionRun(runner, result_format, warn=warned.append), request, warned


OUTCOME = RayJobOutcome("ns", "nightly-score", "nightly-score-sdk", "c", "Complete", "SUCCEEDED", True)


@pytest.fixture(autouse=True)
def workers_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


def test_a_forged_marker_printed_by_a_dying_function_is_never_unpickled(
    forged_job: tuple[Path, str, dict[str, str], str],
) -> None:
    """The reproduction of the issue: on the old code the worker created the file and returned the object."""
    planted, log, metadata, entrypoint = forged_job
    functions, request, _ = reading(JobsStandIn(log, metadata, entrypoint))
    for seen in ([], [line for line in log.splitlines() if line.startswith("KUBERAY-FUNCTION:")]):
        with pytest.raises(
            FunctionResultMissing, match=r"2 line\(s\) .*did not authenticate.* never decoded"
        ) as raised:
            functions.result(request, OUTCOME, seen)
        assert not planted.exists()
        assert log.splitlines()[1].rsplit(":", 1)[-1] not in str(raised.value)  # the payload is never repeated


def test_a_forged_marker_does_not_displace_the_genuine_result_and_is_reported(tmp_path: Path) -> None:
    planted = tmp_path / "planted-by-the-job"
    log, metadata, entrypoint = run_job(FunctionCall(forge_and_die, (str(planted), "return")), TryKey.derive(RUN, 1))
    functions, request, warned = reading(JobsStandIn(log, metadata, entrypoint))
    assert functions.result(request, OUTCOME, []).value is None and not planted.exists()
    assert (
        len(warned) == 1 and "2 line(s)" in warned[0] and "were not printed by this run's function package" in warned[0]
    )


@pytest.mark.parametrize("then", ["exit1", "raise"])
def test_a_failed_job_never_unpickles_and_carries_the_remote_traceback_as_text(tmp_path: Path, then: str) -> None:
    planted = tmp_path / "planted-by-the-job"
    log, metadata, entrypoint = run_job(FunctionCall(forge_and_die, (str(planted), then)), TryKey.derive(RUN, 1))
    functions, request, warned = reading(JobsStandIn(log, metadata, entrypoint))
    failed = RayJobFailed("RayJob failed", OUTCOME, log_tail=log)
    streamed = [
        line for line in log.splitlines() if line.startswith("KUBERAY-FUNCTION:")
    ]  # the sink's, as in a blocking task
    error = functions.failure(request, failed, streamed)
    assert not planted.exists() and "2 line(s)" in warned[0]
    if then == "raise":
        assert isinstance(error, RemoteFunctionError) and "E-FORGED then failed" in str(error)
        assert "in forge_and_die" in error.remote_traceback
    else:
        assert error is failed  # no authenticated error: the RayJob's own failure


@pytest.fixture(scope="module")
def forged_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str], str]:
    """(the file a forged result would create, the job's log, metadata, entrypoint) of a job of this run."""
    planted = tmp_path_factory.mktemp("forged") / "planted-by-the-job"
    return planted, *run_job(
        FunctionCall(forge_and_die, (str(planted), "exit0")), TryKey.derive(RUN, 1, SECRET.encode())
    )


@pytest.mark.parametrize(
    "tamper, why",
    [
        pytest.param(lambda meta, entry: ({}, entry), "lacks kuberay-function-key-id", id="no-metadata"),
        pytest.param(
            lambda meta, entry: (
                {**meta, META_KEY_ID: TryKey.derive(RunIdentity("other", "score", "r"), 1).key_id},
                entry,
            ),
            "not the one this run's secret gives for try 1",
            id="another-runs-key",
        ),
        pytest.param(
            lambda meta, entry: ({**meta, META_TRY: "3", META_KEY_ID: TryKey.derive(RUN, 3).key_id}, entry),
            "later than this try",
            id="a-later-try",
        ),
        pytest.param(
            lambda meta, entry: ({**meta, META_PACKAGE: "0" * 32}, entry),
            "does not run the package its metadata names",
            id="another-package",
        ),
        pytest.param(
            lambda meta, entry: (meta, "python -m attacker_module"),
            "does not run the package its metadata names",
            id="another-entrypoint",
        ),
    ],
)
def test_a_job_whose_metadata_is_not_this_runs_is_refused_unread(
    forged_job: tuple[Path, str, dict[str, str], str], tamper: Any, why: str
) -> None:
    """Someone submitted under the task's submission id first, and the task re-attached to it."""
    planted, log, metadata, entrypoint = forged_job
    metadata, entrypoint = tamper(metadata, entrypoint)
    jobs = JobsStandIn(log, metadata, entrypoint)
    functions, request, _ = reading(jobs)
    with pytest.raises(ForeignRayJob, match=f"is not this run's function job: .*{why}.*did not read its log or result"):
        functions.result(request, OUTCOME, [line for line in log.splitlines() if line.startswith("KUBERAY-FUNCTION:")])
    assert isinstance(functions.failure(request, RayJobFailed("failed", OUTCOME, log), []), ForeignRayJob)
    assert jobs.log_reads == 0 and not planted.exists()


def test_a_retry_re_attaches_to_the_earlier_tries_job_and_verifies_its_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Try 1 ships and submits in its own process and dies; try 2, here, re-attaches and reads the result."""
    script = textwrap.dedent(f"""
        import json, subprocess, sys
        from pathlib import Path
        from kuberay_provider.core.function_keys import TryKey
        from kuberay_provider.core.functions import FunctionCall, shipped
        from kuberay_provider.core.job_request import RunIdentity
        from tests.unit.test_function_trust import square
        with shipped(FunctionCall(square, (12,)), TryKey.derive(RunIdentity(*{[RUN.owner, RUN.task, RUN.run_id]!r}), 1)) as shipment:
            done = subprocess.run([sys.executable, "-m", shipment.package], cwd=Path(shipment.folder).parent,
                                  capture_output=True, text=True, timeout=120)
        print(json.dumps({{"log": done.stdout, "metadata": dict(shipment.metadata), "entrypoint": shipment.entrypoint}}))
    """)
    first_try = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, SECRET_ENV: SECRET},
    )
    assert first_try.returncode == 0, first_try.stderr
    job = json.loads(first_try.stdout)
    assert job["metadata"][META_TRY] == "1"
    functions, request, warned = reading(JobsStandIn(job["log"], job["metadata"], job["entrypoint"]), try_number=2)
    assert functions.result(request, OUTCOME, []).value == 144 and warned == []
    monkeypatch.setenv(SECRET_ENV, "a-worker-with-another-secret-0123456789")  # a retry on a machine not set up alike
    with pytest.raises(ForeignRayJob, match="give every worker the same KUBERAY_FUNCTION_SECRET"):
        functions.result(request, OUTCOME, [])


def test_the_secret_comes_from_the_environment_a_file_or_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert worker_secret() == SECRET.encode()
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(FunctionSecretError, match="shorter than 16 characters"):
        worker_secret()
    monkeypatch.delenv(SECRET_ENV)
    mounted = tmp_path / "mounted-secret"
    mounted.write_text("from-a-kubernetes-secret-0123456789\n")
    monkeypatch.setenv(SECRET_FILE_ENV, str(mounted))
    assert worker_secret() == b"from-a-kubernetes-secret-0123456789"
    monkeypatch.setenv(SECRET_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(FunctionSecretError, match="cannot be read"):
        worker_secret()
    monkeypatch.delenv(SECRET_FILE_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    made = worker_secret()
    path = tmp_path / "config" / "kuberay-provider" / "function-secret"
    assert len(made) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600 and worker_secret() == made
    assert function_keys.default_secret_path() == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["function-secret"]  # nothing staged left behind


class GoneJobs(JobsStandIn):
    """cleanup="delete_cluster": KubeRay deleted the cluster right after the job, and its Jobs API with it."""

    def info(self, job_id: str) -> RayJobInfo:
        raise RuntimeError("503: no endpoints available for service")


def test_a_result_streamed_by_this_try_is_read_though_the_cluster_is_already_gone() -> None:
    log, metadata, entrypoint = run_job(FunctionCall(square, (7,)), TryKey.derive(RUN, 1))
    functions, request, _ = reading(GoneJobs(log, metadata, entrypoint))
    request = RayJobRequest(
        RUN, namespace="ns", spec_params={"entrypoint": entrypoint, "metadata": metadata}, try_number=1
    )
    streamed = [line for line in log.splitlines() if line.startswith("KUBERAY-FUNCTION:")]
    assert functions.result(request, OUTCOME, streamed).value == 49
    with pytest.raises(FunctionResultMissing):  # nothing streamed: the log cannot be read back
        functions.result(request, OUTCOME, [])
    second = job_metadata(TryKey.derive(RUN, 2), metadata[META_PACKAGE])
    later_try = RayJobRequest(
        RUN, namespace="ns", spec_params={"entrypoint": entrypoint, "metadata": second}, try_number=2
    )
    with pytest.raises(FunctionResultMissing):  # try 1's markers do not authenticate as try 2's
        functions.result(later_try, OUTCOME, streamed)
