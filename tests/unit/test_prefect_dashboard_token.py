"""The ``RayJob`` block's ``dashboard_token`` (Ray's token authentication): a secret field, handed to the
dashboard access, never in a repr, and no part of the job's identity (a retry may rotate it)."""

from __future__ import annotations

from kuberay_provider.core.dashboard import DashboardAccess
from tests.unit.test_prefect_block import block

RAY_TOKEN = "ray-dashboard-s3cret-0123456789"


def test_the_dashboard_token_is_secret_and_reaches_the_runner_s_dashboard_access() -> None:
    job = block(entrypoint="python job.py", dashboard_token=RAY_TOKEN, validate_schema=False)  # no cluster here
    assert RAY_TOKEN not in repr(job) and RAY_TOKEN not in str(job.model_dump())
    with job.runner(log_line=print, status_line=print) as runner:
        access: DashboardAccess = runner.lifecycle.dashboard
    assert access.token == RAY_TOKEN and access.uses_service_proxy
    # A run setting, as dashboard_url_template: a retry with a rotated token re-attaches to the same RayJob.
    assert job.job_fingerprint() == block(entrypoint="python job.py").job_fingerprint()
