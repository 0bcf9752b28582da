"""The "Ray Dashboard" link: built from the connection's browser URL template (never the worker-facing
proxy URL), pushed by the operators under the key Airflow's UI reads, and the plugin page it opens when
no browser URL is set. The link in the real UI is tested in tests/e2e/test_airflow_ui_links.py."""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import asyncio
import json
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kuberay_provider.airflow import get_provider_info
from kuberay_provider.airflow.links import HELP_PATH, RayDashboardLink, dashboard_link, push_dashboard_link
from kuberay_provider.airflow.operators import RayClusterCreateOperator, RayJobOperator, RayServiceOperator
from kuberay_provider.airflow.plugin import DashboardLinkHelp, KubeRayPlugin, help_page
from kuberay_provider.core.dashboard_links import DashboardTarget, browser_link
from kuberay_provider.core.job_runner import RayJobFailed, RayJobOutcome
from kuberay_provider.core.lifecycle import Launch, RayJobLifecycle
from kuberay_provider.core.status import RayJobState
from tests.support.airflow_fakes import FakeTaskInstance, RecordingKube

TEMPLATE = "https://ray.example.com/{namespace}/{cluster}"
LINK_KEY = RayDashboardLink().xcom_key
JOB = DashboardTarget("ml", cluster="nightly-abc12", rayjob="nightly", job_id="nightly-x7")


# --- building the link --------------------------------------------------------------------------------


def test_a_known_job_opens_its_page_in_the_dashboard():
    assert browser_link(TEMPLATE, JOB) == "https://ray.example.com/ml/nightly-abc12/#/jobs/nightly-x7"


def test_without_a_job_the_cluster_overview_and_a_rayservice_the_serve_page():
    cluster = DashboardTarget("ml", cluster="shared")
    assert browser_link(TEMPLATE, cluster) == "https://ray.example.com/ml/shared"
    assert (
        browser_link(TEMPLATE, DashboardTarget("ml", cluster="svc-x", page="serve"))
        == "https://ray.example.com/ml/svc-x/#/serve"
    )


def test_a_query_or_a_fragment_of_the_template_is_kept():
    assert browser_link("http://127.0.0.1:8265/?ns={namespace}", JOB) == "http://127.0.0.1:8265/?ns=ml#/jobs/nightly-x7"
    # The template places the job itself (e.g. a history server), or opens a page of its own choosing.
    assert browser_link("https://h.example/{namespace}/jobs/{job_id}", JOB) == "https://h.example/ml/jobs/nightly-x7"
    assert browser_link("https://r.example/{cluster}/#/overview", JOB) == "https://r.example/nightly-abc12/#/overview"


def test_no_link_while_the_template_needs_what_is_not_known_yet():
    # A RayJob's own cluster is named by KubeRay only once it runs: a link to ".../ml/" would be wrong.
    assert browser_link(TEMPLATE, DashboardTarget("ml", rayjob="nightly")) is None
    assert browser_link("https://r.example/{rayjob}", DashboardTarget("ml", cluster="shared")) is None


@pytest.mark.parametrize(
    ("template", "says"),
    [
        (
            "http://{service}.{namespace}.svc:8265",
            r"uses \{service\}; it may use only \{namespace\}, \{cluster\}, \{rayjob\}, \{job_id\}",
        ),
        ("https://r.example/{cluster", "not a valid template"),
        ("ray.example.com/{cluster}", "a browser cannot open; give a whole URL"),
    ],
)
def test_a_bad_template_says_what_to_write(template: str, says: str):
    with pytest.raises(ValueError, match=says):
        browser_link(template, JOB)


def test_values_are_quoted_into_the_url():
    assert (
        browser_link("https://r.example/?job={job_id}", DashboardTarget("ml", job_id="a b/c"))
        == "https://r.example/?job=a%20b%2Fc"
    )


def test_targets_of_the_rayjob_operators_stages():
    outcome = RayJobOutcome("ml", "nightly", "nightly-x7", "nightly-abc12", "Complete", "SUCCEEDED", True)
    assert DashboardTarget.of_outcome(outcome) == JOB
    state = RayJobState("nightly", "ml", "RUNNING", "Running", job_id="nightly-x7", cluster_name="nightly-abc12")
    assert DashboardTarget.of_rayjob(state) == JOB


# --- what the task shows ------------------------------------------------------------------------------


def test_without_a_browser_url_the_link_leads_to_the_page_saying_how_to_set_it():
    link = dashboard_link({"dashboard_url_template": "http://{service}.{namespace}.svc:8265"}, "kuberay_default", JOB)
    assert link is not None and link.startswith(HELP_PATH + "?")
    assert "/api/v1/namespaces" not in link and "svc" not in link  # never the workers' URL
    query = {key: values[0] for key, values in parse_qs(urlsplit(link).query).items()}
    assert query == {
        "conn_id": "kuberay_default",
        "namespace": "ml",
        "cluster": "nightly-abc12",
        "rayjob": "nightly",
        "job_id": "nightly-x7",
    }


def test_with_a_browser_url_the_link_is_the_rendered_template():
    assert (
        dashboard_link({"dashboard_browser_url": f"  {TEMPLATE} "}, "c", JOB)
        == "https://ray.example.com/ml/nightly-abc12/#/jobs/nightly-x7"
    )


@dataclass
class Hook:
    conn_extras: dict[str, Any] = field(default_factory=dict)
    kuberay_conn_id: str = "kuberay_default"
    instance_id: str = ""

    def get_namespace(self) -> str:
        return "ml"


def test_the_link_is_pushed_under_the_key_airflows_ui_reads():
    ti = FakeTaskInstance()
    push_dashboard_link({"ti": ti}, Hook({"dashboard_browser_url": TEMPLATE}), JOB)
    assert LINK_KEY == "_link_RayDashboardLink"
    assert ti.pushed == {LINK_KEY: "https://ray.example.com/ml/nightly-abc12/#/jobs/nightly-x7"}


def test_a_bad_template_is_a_warning_never_a_failure(caplog: pytest.LogCaptureFixture):
    ti = FakeTaskInstance()
    push_dashboard_link({"ti": ti}, Hook({"dashboard_browser_url": "http://{service}:8265"}), JOB)
    assert ti.pushed == {}
    assert "Ray Dashboard link is left out" in caplog.text and "dashboard_browser_url" in caplog.text


@dataclass
class FakeRunner:
    """Launch, then a run that starts (on_started) and ends with ``ends``: an outcome or a RayJobFailed."""

    lifecycle: RayJobLifecycle
    ends: Any
    on_started: Any = None
    links_seen_at_start: list[str] = field(default_factory=list)

    def launch(self, request: Any) -> Launch:
        return Launch({}, created=True)

    def dashboard_url_of(self, request: Any) -> str:
        return "https://kube.test/api/v1/namespaces/ml/services/x-head-svc:dashboard/proxy/"

    def dashboard_url(self, state: Any) -> str:
        return self.dashboard_url_of(None)

    def follow(self, request: Any, timeout: float | None) -> RayJobOutcome:
        self.on_started(
            RayJobState("nightly", "ml", "RUNNING", "Running", job_id="nightly-x7", cluster_name="nightly-abc12")
        )
        if isinstance(self.ends, BaseException):
            raise self.ends
        return self.ends

    def cleanup(self, *args: Any, **kwargs: Any) -> bool:
        return False


def run_operator(
    monkeypatch: pytest.MonkeyPatch, extras: dict[str, Any], ends: Any
) -> tuple[FakeTaskInstance, list[str]]:
    """A RayJobOperator try on fakes; returns the task instance and each link pushed, in order."""
    runner = FakeRunner(RayJobLifecycle(RecordingKube()), ends)  # type: ignore[arg-type]
    op = RayJobOperator(task_id="score", entrypoint="python x.py", namespace="ml", name="nightly")
    hook = Hook(extras)
    monkeypatch.setattr(type(op), "hook", property(lambda self: hook))
    monkeypatch.setattr(op, "_runner", lambda: runner)
    monkeypatch.setattr("kuberay_provider.airflow.operators.rayjob.mark_consumed", lambda *a, **k: None)
    ti = FakeTaskInstance(max_tries=0)
    links: list[str] = []
    real_push = ti.xcom_push
    monkeypatch.setattr(
        ti, "xcom_push", lambda key, value: (links.append(value) if key == LINK_KEY else None, real_push(key, value))
    )
    if isinstance(ends, BaseException):
        with pytest.raises(Exception, match="boom"):
            op.execute({"ti": ti})  # type: ignore[arg-type]
    else:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    return ti, links


def test_the_rayjob_operator_links_the_cluster_as_soon_as_it_runs_then_the_jobs_page(monkeypatch: pytest.MonkeyPatch):
    outcome = RayJobOutcome("ml", "nightly", "nightly-x7", "nightly-abc12", "Complete", "SUCCEEDED", True)
    ti, links = run_operator(monkeypatch, {"dashboard_browser_url": TEMPLATE}, outcome)
    # At creation the cluster has no name yet (the template needs it): no link rather than a wrong one.
    assert links == ["https://ray.example.com/ml/nightly-abc12/#/jobs/nightly-x7"] * 2
    assert ti.pushed["ray_dashboard_url"].startswith("https://kube.test/")  # the workers' URL stays as it was


def test_a_failed_job_still_links_its_page(monkeypatch: pytest.MonkeyPatch):
    failed = RayJobFailed(
        "boom", RayJobOutcome("ml", "nightly", "nightly-y9", "nightly-abc12", "Failed", "FAILED", False)
    )
    _, links = run_operator(monkeypatch, {"dashboard_browser_url": TEMPLATE}, failed)
    assert links[-1] == "https://ray.example.com/ml/nightly-abc12/#/jobs/nightly-y9"


def test_without_a_browser_url_the_operator_links_the_help_page(monkeypatch: pytest.MonkeyPatch):
    outcome = RayJobOutcome("ml", "nightly", "nightly-x7", "nightly-abc12", "Complete", "SUCCEEDED", True)
    _, links = run_operator(monkeypatch, {}, outcome)
    assert links and all(link.startswith(HELP_PATH + "?conn_id=kuberay_default&namespace=ml") for link in links)


def test_every_operator_that_makes_a_cluster_has_the_link():
    for operator in (RayJobOperator, RayClusterCreateOperator, RayServiceOperator):
        assert [link.name for link in operator.operator_extra_links] == ["Ray Dashboard"], operator


# --- registration and the help page -------------------------------------------------------------------


def test_the_connection_form_has_the_browser_url_and_the_plugin_is_registered():
    [conn] = get_provider_info()["connection-types"]
    assert "for browsers" in conn["conn-fields"]["dashboard_browser_url"]["label"]
    assert "for the workers" in conn["conn-fields"]["dashboard_url_template"]["label"]
    [plugin] = [ep for ep in entry_points(group="airflow.plugins") if ep.name == "kuberay_provider"]
    assert plugin.load() is KubeRayPlugin
    assert KubeRayPlugin.fastapi_apps[0]["url_prefix"] == "/kuberay-provider" and HELP_PATH.startswith(
        "kuberay-provider/"
    )


def test_the_connection_on_the_airflow_page_links_the_job_as_the_page_says():
    page = (Path(__file__).resolve().parents[2] / "docs" / "airflow.md").read_text()
    [snippet] = [block for block in re.findall(r"```json\n(.*?)```", page, re.S) if "dashboard_browser_url" in block]
    extras = json.loads(snippet)["extra"]
    target = DashboardTarget(extras["namespace"], cluster="nightly-abc12", job_id="nightly-x7")
    link = dashboard_link(extras, "kuberay_default", target)
    assert link == "https://ray.example.com/ml/nightly-abc12/#/jobs/nightly-x7"
    assert "`https://ray.example.com/ml/<cluster>/#/jobs/<job id>`" in page


def test_the_help_page_says_how_to_set_the_url_and_how_to_reach_this_dashboard_now():
    page = help_page({"conn_id": "kuberay_ui", "namespace": "ml", "cluster": "nightly-abc12", "job_id": "nightly-x7"})
    assert "<code>kuberay_ui</code>" in page and "dashboard_browser_url" in page
    assert "kubectl -n ml port-forward service/nightly-abc12-head-svc 8265:8265" in page
    assert 'href="http://127.0.0.1:8265/#/jobs/nightly-x7"' in page


def test_the_help_page_escapes_what_the_link_carries():
    page = help_page({"conn_id": "<script>alert(1)</script>", "namespace": '"><img src=x onerror=alert(1)>'})
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page


def call(method: str, query: bytes = b"") -> tuple[dict[str, Any], bytes]:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    scope = {"type": "http", "method": method, "path": "/kuberay-provider/dashboard-link", "query_string": query}
    asyncio.run(DashboardLinkHelp()(scope, receive, send))
    return sent[0], sent[1]["body"]


def test_the_plugin_serves_the_page_with_no_script_allowed():
    start, body = call("GET", b"conn_id=kuberay_default&namespace=ml")
    headers = dict(start["headers"])
    assert start["status"] == 200 and headers[b"content-type"].startswith(b"text/html")
    assert b"default-src 'none'" in headers[b"content-security-policy"]
    assert b"No browser URL for the Ray dashboard" in body
    assert call("POST")[0]["status"] == 405
