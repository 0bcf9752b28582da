"""create_or_attach across tries: re-attach to a live or succeeded RayJob, replace one a previous try failed."""

from __future__ import annotations

from typing import Any, Iterator

import pytest

from kuberay_provider.core.job_request import RayJobRequest, RunIdentity
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.lifecycle import RayJobLifecycle

FAILED = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}
COMPLETE_BUT_STOPPED = {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}
SUCCEEDED = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}
RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}


class OneRayJobKube:
    """A namespace holding at most one RayJob; deleting it ends the watch with DELETED."""

    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.existing = existing
        self.calls: list[str] = []

    def find(self, kind: Any, namespace: str, name: str) -> dict[str, Any] | None:
        return self.existing

    def delete(self, kind: Any, namespace: str, name: str, *, propagation_policy: str) -> bool:
        self.calls.append(f"delete:{propagation_policy}")
        return True

    def watch(self, kind: Any, namespace: str, **query: Any) -> Iterator[WatchEvent]:
        gone, self.existing = self.existing, None
        yield WatchEvent("DELETED", gone or {})

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.calls.append("dry-run" if dry_run else "create")
        return manifest


def manifest_of_try(try_number: int) -> dict[str, Any]:
    request = RayJobRequest(RunIdentity("dag", "task", "run-1"), spec_params={"entrypoint": "python x.py"}, try_number=try_number)
    return request.manifest()


def launched(existing_try: int, status: dict[str, str], try_number: int) -> tuple[Any, list[str]]:
    existing = {**manifest_of_try(existing_try), "status": status}
    kube = OneRayJobKube(existing)
    return RayJobLifecycle(kube).create_or_attach(manifest_of_try(try_number)), kube.calls  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [FAILED, COMPLETE_BUT_STOPPED])
def test_a_later_try_replaces_a_failed_rayjob(status: dict[str, str]):
    launch, calls = launched(1, status, 2)
    assert launch.created and launch.replaced
    assert calls == ["delete:Foreground", "dry-run", "create"]


@pytest.mark.parametrize("status", [SUCCEEDED, RUNNING])
def test_a_later_try_reattaches_to_a_succeeded_or_live_rayjob(status: dict[str, str]):
    launch, calls = launched(1, status, 2)
    assert not launch.created and calls == []


def test_the_same_try_reattaches_even_to_a_failed_rayjob():
    launch, calls = launched(2, FAILED, 2)
    assert not launch.created and calls == []
