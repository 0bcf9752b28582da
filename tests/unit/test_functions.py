"""Shipping a function: the package runs as the Ray job would run it (``python -m <package>``, here in a
subprocess), and the task reads the result, the path, or the remote exception back from its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kuberay_provider.core.function_runs import DEFAULT_FUNCTION_CLEANUP, FunctionRun
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


def square_and_describe(value: int, *, label: str) -> dict[str, Any]:
    return {"label": label, "square": value * value, "helper": _helper(value)}


def _helper(value: int) -> str:  # pickled by value with the module: the cluster needs no copy of this file
    return f"v{value}"


def explode(reason: str) -> None:
    raise ValueError(f"bad input: {reason}")


def run_as_the_cluster_would(call: FunctionCall, *, python: list[int] | None = None) -> str:
    with shipped(call) as shipment:
        if python is not None:
            meta = json.loads((Path(shipment.folder) / "meta.json").read_text())
            (Path(shipment.folder) / "meta.json").write_text(json.dumps({**meta, "python": python}))
        done = subprocess.run([sys.executable, "-m", shipment.package], cwd=Path(shipment.folder).parent,
                              capture_output=True, text=True, timeout=120)
        assert shipment.entrypoint == f"python -m {shipment.package}"
    return done.stdout


def test_the_result_comes_back_from_the_jobs_output() -> None:
    out = run_as_the_cluster_would(FunctionCall(square_and_describe, (7,), {"label": "x"}))
    assert read_outcome("some log line\n" + out).value == {"label": "x", "square": 49, "helper": "v7"}
    assert shown_line(out.strip()).startswith("<the function's result:")


def test_an_exception_comes_back_with_its_remote_traceback() -> None:
    out = run_as_the_cluster_would(FunctionCall(explode, ("negative",)))
    with pytest.raises(RemoteFunctionError) as raised:
        read_outcome(out)
    assert raised.value.error_type == "ValueError" and "bad input: negative" in str(raised.value)
    assert 'in explode\n    raise ValueError(f"bad input: {reason}")' in raised.value.remote_traceback


def test_a_large_result_is_refused_unless_written_to_a_path(tmp_path: Path) -> None:
    with pytest.raises(RemoteFunctionError, match="more than max_result_bytes=100"):
        read_outcome(run_as_the_cluster_would(FunctionCall(bytes, (1000,), max_result_bytes=100)))
    path = tmp_path / "out" / "result.pkl"
    outcome = read_outcome(run_as_the_cluster_would(FunctionCall(bytes, (1000,), result_path=str(path), max_result_bytes=100)))
    assert outcome.kind == "path" and outcome.value == str(path)
    import pickle

    assert pickle.loads(path.read_bytes()) == bytes(1000)


def test_a_python_mismatch_is_refused_before_unpickling() -> None:
    with pytest.raises(RemoteFunctionError, match="pickled on Python 3.1 but the Ray cluster runs Python"):
        read_outcome(run_as_the_cluster_would(FunctionCall(square_and_describe, (1,), {"label": "y"}), python=[3, 1]))


def test_no_marker_means_no_result() -> None:
    with pytest.raises(FunctionResultMissing):
        read_outcome("the job was stopped\n")


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

    base = RayJobRequest(RunIdentity("d", "t", "r"), spec_params={"entrypoint": "placeholder", "ray_cluster_spec": simple_cluster_spec(image="i")})
    with shipped(FunctionCall(_helper, (1,))) as shipment:
        request = FunctionRun.request_for(base, shipment)
        assert request.cleanup == DEFAULT_FUNCTION_CLEANUP and request.submits_itself
        assert request.manifest()["spec"]["entrypoint"] == shipment.entrypoint
        assert request.submission().runtime_env == {"py_modules": [shipment.folder]}
        assert "py_modules" not in (request.manifest()["spec"].get("runtimeEnvYAML") or "")  # no local path in the RayJob
    chosen = FunctionRun.request_for(RayJobRequest(RunIdentity("d", "t", "r"), spec_params={**base.spec_params, "shutdown_after_job_finishes": False}), None)
    assert chosen.cleanup is None
    on_cluster = FunctionRun.request_for(RayJobRequest(RunIdentity("d", "t", "r"), spec_params={"entrypoint": "x"}, cluster_selector="c"), None)
    assert on_cluster.cleanup is None and on_cluster.runs_without_rayjob
