"""Waiting on a Ray job's own status, as Ray reports it (not as a RayJob mirrors it)."""

from __future__ import annotations

import time


def ray_job_status_becomes(ray_dashboard_url: str, job_id: str, wanted: set[str], timeout: float) -> str:
    from ray.job_submission import JobSubmissionClient

    client, deadline, status = JobSubmissionClient(ray_dashboard_url), time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            status = str(client.get_job_status(job_id).value)
        except RuntimeError:  # not submitted yet
            status = ""
        if status in wanted:
            return status
        time.sleep(1)
    raise AssertionError(f"Ray job {job_id} is {status or 'unknown'}, not {wanted}, after {timeout} s")
