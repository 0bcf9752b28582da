"""The task's link to the Ray dashboard, from the URL the operator pushes to XCom as soon as it knows it."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink

XCOM_DASHBOARD_URL = "ray_dashboard_url"


class RayDashboardLink(BaseOperatorLink):
    name = "Ray Dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return str(XCom.get_value(ti_key=ti_key, key=XCOM_DASHBOARD_URL) or "")
