"""Shipping a function: the package runs as the Ray job would run it (``python -m <package>``, here in a
subprocess), and the task reads the result, the path, or the remote exception back from its output,
believing only marker lines this try's key authenticates."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kuberay_provider.core.function_keys import (
    META_KEY_ID,
    META_PACKAGE,
    META_TRY,
    SECRET_ENV,
    TryKey,
    VerifiedJob,
)
from kuberay_provider.core.function_runs import DEFAULT_FUNCTION_CLEANUP, DEFAULT_RESULT_HOLD_SECONDS, FunctionRun
from kuberay_provider.core.functions import (
    FunctionCall,
    FunctionResultMissing,
    RemoteFunctionError,
    VersionMismatch,
    check_versions,
    python_of_image,
    read_outcome,
    shipped,
    shown_line,
)
from kuberay_provider.core.job_request import RayJobRequest, RunIdentity

SECRET = b"unit-test-secret-of-the-workers-0123456789"
RUN = RunIdentity("d", "t", "r")
KEY = TryKey.derive(RUN, 1, SECRET)


def square_and_describe(value: int, *, label: str) -> dict[str, Any]:
    return {"label": label, "square": value * value, "helper": _helper(value)}


def _helper(value: int) -> str:  # pickled by value with the module: the cluster needs no copy of this file
    return f"v{value}"


def explode(reason: str) -> None:
    raise ValueError(f"bad input: {reason}")


def run_as_the_cluster_would(
    call: FunctionCall, *, python: list[int] | None = None, key: TryKey = KEY
) -> tuple[str, VerifiedJob]:
    """The job's output, and the job as the task verifies it (from the metadata the package ships with)."""
    with shipped(call, key) as shipment:
        if python is not None:
            meta = json.loads((Path(shipment.folder) / "meta.json").read_text())
            (Path(shipment.folder) / "meta.json").write_text(json.dumps({**meta, "python": python}))
        done = subprocess.run(
            [sys.executable, "-m", shipment.package],
            cwd=Path(shipment.folder).parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shipment.entrypoint == f"python -m {shipment.package}"
        job = VerifiedJob("job-1", key, shipment.digest)
    return done.stdout, job


def test_the_result_comes_back_from_the_jobs_output() -> None:
    out, job = run_as_the_cluster_would(FunctionCall(square_and_describe, (7,), {"label": "x"}))
    assert read_outcome("some log line\n" + out, job).value == {"label": "x", "square": 49, "helper": "v7"}
    assert shown_line(out.strip()).startswith("<the function's result:")


def test_an_exception_comes_back_with_its_remote_traceback() -> None:
    out, job = run_as_the_cluster_would(FunctionCall(explode, ("negative",)))
    with pytest.raises(RemoteFunctionError) as raised:
        read_outcome(out, job)
    assert raised.value.error_type == "ValueError" and "bad input: negative" in str(raised.value)
    assert 'in explode\n    raise ValueError(f"bad input: {reason}")' in raised.value.remote_traceback


def test_a_large_result_is_refused_unless_written_to_a_path(tmp_path: Path) -> None:
    with pytest.raises(RemoteFunctionError, match="more than max_result_bytes=100"):
        read_outcome(*run_as_the_cluster_would(FunctionCall(bytes, (1000,), max_result_bytes=100)))
    path = tmp_path / "out" / "result.pkl"
    outcome = read_outcome(
        *run_as_the_cluster_would(FunctionCall(bytes, (1000,), result_path=str(path), max_result_bytes=100))
    )
    assert outcome.kind == "path" and outcome.value == str(path)
    import pickle

    assert pickle.loads(path.read_bytes()) == bytes(1000)


def test_a_python_mismatch_is_refused_before_unpickling() -> None:
    with pytest.raises(RemoteFunctionError, match="pickled on Python 3.1 but the Ray cluster runs Python"):
        read_outcome(*run_as_the_cluster_would(FunctionCall(square_and_describe, (1,), {"label": "y"}), python=[3, 1]))


def test_no_marker_means_no_result() -> None:
    with pytest.raises(FunctionResultMissing):
        read_outcome("the job was stopped\n", VerifiedJob("job-1", KEY, "0" * 32))


def test_versions_are_checked_from_the_image_tag_and_rayversion() -> None:
    import ray

    assert python_of_image("rayproject/ray:2.52.0-py311") == (3, 11)
    assert python_of_image("rayproject/ray:2.52.0-py39-cu121") == (3, 9)
    assert python_of_image("rayproject/ray:2.52.0") is None
    warnings: list[str] = []
    check_versions(tuple(sys.version_info[:2]), ray.__version__, warnings.append)
    assert warnings == []
    check_versions(None, "1.0.0", warnings.append)
    assert "Ray 1.0.0" in warnings[0]
    with pytest.raises(VersionMismatch, match="Python 3.1 .from its image."):
        check_versions((3, 1), None, warnings.append)


def test_the_request_ships_the_package_and_cleans_up_an_own_cluster_by_default() -> None:
    from kuberay_provider.core.spec import simple_cluster_spec

    base = RayJobRequest(
        RUN,
        spec_params={
            "entrypoint": "placeholder",
            "ray_cluster_spec": simple_cluster_spec(image="i"),
            "metadata": {"team": "ml"},
        },
    )
    with shipped(FunctionCall(_helper, (1,)), KEY) as shipment:
        request = FunctionRun.request_for(base, shipment)
        # Held for the result, then the default cleanup once a try has read it.
        assert request.cleanup == f"delete_cluster_after:{DEFAULT_RESULT_HOLD_SECONDS}" and request.submits_itself
        assert request.cleanup_after_read == DEFAULT_FUNCTION_CLEANUP == "delete_cluster" and request.result_in_log
        assert request.manifest()["spec"]["entrypoint"] == shipment.entrypoint
        submission = request.submission()
        assert submission.runtime_env == {"py_modules": [shipment.folder]}
        assert "py_modules" not in (
            request.manifest()["spec"].get("runtimeEnvYAML") or ""
        )  # no local path in the RayJob
        # The job's metadata names the key (its id), the try and the package; the key itself only the package holds.
        assert submission.metadata == {
            "team": "ml",
            META_KEY_ID: KEY.key_id,
            META_TRY: "1",
            META_PACKAGE: shipment.digest,
        }
        assert (Path(shipment.folder) / "key").read_text() == KEY.key.hex()
        public = json.dumps([request.manifest(), submission.submit_arguments(), repr(KEY), repr(shipment)])
        assert KEY.key.hex() not in public and SECRET.decode() not in public
    raw = FunctionRun.request_for(
        RayJobRequest(
            RunIdentity("d", "t", "r"), spec_params={**base.spec_params, "shutdown_after_job_finishes": False}
        ),
        None,
    )
    assert raw.cleanup is None and raw.cleanup_after_read is None  # raw KubeRay fields: the user's, not held
    on_cluster = FunctionRun.request_for(
        RayJobRequest(RunIdentity("d", "t", "r"), spec_params={"entrypoint": "x"}, cluster_selector="c"), None
    )
    assert on_cluster.cleanup is None and on_cluster.cleanup_after_read is None and on_cluster.runs_without_rayjob


@pytest.mark.parametrize(
    ("choice", "hold", "created_with", "released_to"),
    [
        (
            "delete_cluster_after:30",
            600,
            {"shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": 600},
            {"shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": 30, "deletionStrategy": None},
        ),
        (
            "delete_cluster",
            5,
            {"shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": 5},
            {"shutdownAfterJobFinishes": True, "ttlSecondsAfterFinished": None, "deletionStrategy": None},
        ),
        ("keep", 600, {"shutdownAfterJobFinishes": False}, None),
    ],
)
def test_a_chosen_cleanup_is_held_at_create_and_applied_once_the_result_is_read(
    choice: str, hold: int, created_with: dict[str, Any], released_to: dict[str, Any] | None
) -> None:
    from kuberay_provider.core.job_runner import RayJobRunner
    from kuberay_provider.core.lifecycle import RayJobLifecycle
    from kuberay_provider.core.spec import simple_cluster_spec

    class Patches:
        def __init__(self) -> None:
            self.bodies: list[dict[str, Any]] = []

        def patch(self, kind: Any, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
            self.bodies.append(body)
            return {}

    base = RayJobRequest(
        RUN, cleanup=choice, spec_params={"entrypoint": "x", "ray_cluster_spec": simple_cluster_spec(image="i")}
    )
    request = FunctionRun.request_for(base, None, hold)
    spec = request.manifest()["spec"]
    assert {name: spec[name] for name in created_with} == created_with and ("ttlSecondsAfterFinished" in spec) == (
        "ttlSecondsAfterFinished" in created_with
    )
    kube, said = Patches(), []
    released = FunctionRun(RayJobRunner(RayJobLifecycle(kube), status_line=said.append)).release(request)  # type: ignore[arg-type]
    assert released == (released_to is not None)
    assert kube.bodies == ([{"spec": released_to}] if released_to is not None else [])
    if released_to is not None:
        assert f"cleanup={choice!r} now applies" in said[-1]


# --- the result format, and what authenticates a marker ------------------------------------------


def as_record(day: str) -> dict[str, Any]:
    return {"day": day, "rows": [1, 2, 3], "ok": True, "note": None}


def test_a_json_result_round_trips_and_nothing_is_unpickled(monkeypatch: pytest.MonkeyPatch) -> None:
    out, job = run_as_the_cluster_would(FunctionCall(as_record, ("2026-03-14",), result_format="json"))
    assert out.startswith("KUBERAY-FUNCTION:json:")
    import pickle

    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a JSON result must not be unpickled"))
    outcome = read_outcome(out, job, "json")
    assert outcome.kind == "result" and outcome.value == {
        "day": "2026-03-14",
        "rows": [1, 2, 3],
        "ok": True,
        "note": None,
    }
    with pytest.raises(RemoteFunctionError, match="ResultNotJSON.*result_format='pickle'"):
        read_outcome(*run_as_the_cluster_would(FunctionCall(set, ([1],), result_format="json")), "json")
    with pytest.raises(ValueError, match="result_format must be one of 'pickle', 'json'"):
        FunctionCall(as_record, result_format="yaml")


def test_a_pickled_result_is_not_unpickled_when_the_task_asks_for_json() -> None:
    out, job = run_as_the_cluster_would(FunctionCall(as_record, ("d",)))  # an earlier try that still pickled
    with pytest.raises(FunctionResultMissing, match="result_format='json', so it was not unpickled"):
        read_outcome(out, job, "json")


def test_a_marker_with_a_bad_authenticator_is_ignored_and_not_repeated() -> None:
    out, job = run_as_the_cluster_would(FunctionCall(square_and_describe, (3,), {"label": "z"}))
    kind, mac, payload = out.strip()[len("KUBERAY-FUNCTION:") :].split(":")
    tampered = f"KUBERAY-FUNCTION:{kind}:{mac[:-1]}{'0' if mac[-1] != '0' else '1'}:{payload}"
    with pytest.raises(
        FunctionResultMissing, match=r"1 line\(s\) .* did not authenticate with this try's key"
    ) as raised:
        read_outcome(tampered, job)
    assert payload not in str(raised.value) and mac not in str(raised.value)
    with pytest.raises(FunctionResultMissing, match="did not authenticate"):  # the marker of another package
        read_outcome(out, VerifiedJob("job-1", KEY, "f" * 32))
    assert read_outcome(f"{tampered}\n{out}", job).ignored == 1  # the genuine line still counts


def test_a_result_made_with_another_tries_or_runs_key_is_refused() -> None:
    out, job = run_as_the_cluster_would(FunctionCall(square_and_describe, (2,), {"label": "w"}))
    for other in (
        TryKey.derive(RUN, 2, SECRET),
        TryKey.derive(RunIdentity("d", "t", "r2"), 1, SECRET),
        TryKey.derive(RUN, 1, b"another-deployment-secret-0123456789"),
    ):
        with pytest.raises(FunctionResultMissing, match="did not authenticate"):
            read_outcome(out, VerifiedJob("job-1", other, job.digest))
    assert read_outcome(out, job).value["square"] == 4


def test_the_key_is_derived_alike_in_every_process_and_differs_per_try_and_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET.decode())
    probe = (
        "from kuberay_provider.core.function_keys import TryKey; from kuberay_provider.core.job_request import RunIdentity; "
        "print(TryKey.derive(RunIdentity('d', 't', 'r'), 1).key_id)"
    )
    elsewhere = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert elsewhere.stdout.strip() == TryKey.derive(RUN, 1).key_id == KEY.key_id
    ids = {TryKey.derive(RUN, number).key_id for number in (1, 2, 3)} | {
        TryKey.derive(RunIdentity("d", "t", "r", 0), 1).key_id
    }
    assert len(ids) == 4
    assert KEY.key.hex() not in repr(KEY) and KEY.key_id != KEY.key.hex()[:32]
