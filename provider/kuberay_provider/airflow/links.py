"""The tasks' "Ray Dashboard" link: to where a person's browser opens the Ray dashboard.

Airflow 3's UI shows, for each extra link, the XCom stored under the link's ``xcom_key`` (the API server
never runs ``get_link``: the worker does when the try ends, and stores what it returns there). So the
operators push the link under that key themselves as soon as they know it, and the UI has it while the
job still runs; ``get_link`` then hands the same value back.

The link comes from the connection's ``dashboard_browser_url`` template (``core.dashboard_links``), never
from the worker-facing URL (the API server's service proxy a browser has no credentials for). Without
one, it leads to a page of this provider's Airflow plugin (``plugin.py``) saying how to set it and how to
reach this dashboard meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from airflow.sdk import BaseOperatorLink

from kuberay_provider.core.dashboard_links import DashboardTarget, browser_link

XCOM_DASHBOARD_URL = "ray_dashboard_url"  # the worker-facing dashboard URL (unchanged, for code that reads it)
BROWSER_URL_FIELD = "dashboard_browser_url"
# Relative, without a leading "/": the UI's <base href> resolves it under Airflow's own base path.
HELP_PATH = "kuberay-provider/dashboard-link"

log = logging.getLogger(__name__)


class RayDashboardLink(BaseOperatorLink):
    name = "Ray Dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return str(XCom.get_value(ti_key=ti_key, key=self.xcom_key) or "")


def browser_url_template(extras: Mapping[str, Any]) -> str:
    """The connection's browser URL template ("" when not set)."""
    return str(extras.get(BROWSER_URL_FIELD) or "").strip()


def help_link(conn_id: str, target: DashboardTarget) -> str:
    """The plugin's page explaining the missing browser URL, with what it needs to say how to reach
    this dashboard meanwhile."""
    facts = {"conn_id": conn_id, **{key: value for key, value in asdict(target).items() if value}}
    return f"{HELP_PATH}?{urlencode(facts)}"


def dashboard_link(extras: Mapping[str, Any], conn_id: str, target: DashboardTarget) -> str | None:
    """The link a task shows for ``target`` (None while the template needs what is not known yet)."""
    template = browser_url_template(extras)
    return browser_link(template, target) if template else help_link(conn_id, target)


def push_dashboard_link(context: Any, hook: Any, target: DashboardTarget) -> None:
    """Push the task's link (``hook`` is the task's KubeRayHook). A link is a convenience: a bad template
    is a warning in the task's log, never a failure."""
    try:
        link = dashboard_link(hook.conn_extras, hook.kuberay_conn_id, target)
    except Exception as exc:
        log.warning(
            "The task's Ray Dashboard link is left out: %s. Fix the field %r of connection %r.",
            exc,
            BROWSER_URL_FIELD,
            getattr(hook, "kuberay_conn_id", "?"),
        )
        return
    if link:
        context["ti"].xcom_push(key=RayDashboardLink().xcom_key, value=link)
