"""The "Ray Dashboard" link as a person meets it: Airflow's own API server (the React UI) on this session's
Airflow home, driven by headless Chromium (Debian's chromium and its chromedriver, installed by
``bash .ci/dev setup``) through Selenium.

A DAG run on the local control plane comes first (tests/e2e/airflow_dags/ui_links.py): a RayJob whose
connection has a browser URL (the session's real Ray dashboard, so the link can be followed) and a
RayCluster whose connection has none. Then the UI: the connection form shows the kuberay fields and
stores the browser URL where the provider reads it; the finished task's link opens the Ray job's page;
the link without a browser URL opens the provider's page saying how to set it.

Screenshots go to the test's temporary folder; with KUBERAY_DOC_SCREENSHOTS=1 they also replace those of
docs/images/ that docs/airflow.md shows.
"""

from __future__ import annotations

from tests.airflow_env import configure_airflow_env

configure_airflow_env()

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kuberay_provider.airflow.links import HELP_PATH, dashboard_link
from kuberay_provider.core.dashboard_links import DashboardTarget
from kuberay_provider.local.ray_backend.ray_head import free_port
from tests.support.airflow_runs import load_dag, task_instance

pytestmark = pytest.mark.ray

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
DAG_ID = "kuberay_e2e_ui_links"
API_SERVER_START_TIMEOUT = 240  # seconds; about 40 s on two busy cores
UI_TIMEOUT = 60  # seconds for a page of the React UI to show what is looked for


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    ray_dashboard_url: str
    outcome: dict[str, Any]  # the RayJob task's return value

    @property
    def expected_link(self) -> str:
        """The connection's template rendered for the job, with the Ray dashboard's route to the job's page."""
        return f"{self.ray_dashboard_url}/?namespace=default&cluster={self.outcome['cluster_name']}#/jobs/{self.outcome['job_id']}"


@pytest.fixture(scope="module")
def finished_run(airflow: Path, least_privilege_kubeconfig: Path, ray_dashboard_url: str) -> Iterator[FinishedRun]:
    """The DAG run, before the API server starts (both on one SQLite file: never write it from two processes)."""
    # The browser URL leads to the session's real Ray dashboard (every cluster of the local plane runs on it);
    # the query carries the placeholders, which the dashboard ignores.
    template = f"{ray_dashboard_url}/?namespace={{namespace}}&cluster={{cluster}}"
    connection = {
        "conn_type": "kuberay",
        "extra": {
            "kube_config_path": str(least_privilege_kubeconfig),
            "namespace": "default",
            "dashboard_browser_url": template,
        },
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_KUBERAY_LINKS", json.dumps(connection))
        run = load_dag(DAG_ID).test()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", states
    yield FinishedRun(run.run_id, ray_dashboard_url, task_instance(run, "score").xcom_pull(task_ids="score"))


@pytest.fixture(scope="module")
def api_server(finished_run: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``airflow api-server`` on this session's Airflow home, every user an admin (no login page); its URL."""
    workdir = tmp_path_factory.mktemp("api-server")
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
    }
    log_path = workdir / "api-server.log"
    with log_path.open("wb") as log:
        # Its own session (process group): the server and its worker processes are stopped together.
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log_path)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + API_SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"airflow api-server exited ({process.returncode}):\n{log_path.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(
        f"airflow api-server did not answer within {API_SERVER_START_TIMEOUT} s:\n{log_path.read_text()[-4000:]}"
    )


def require_chromium() -> None:
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if shutil.which("apt-get") and os.geteuid() == 0:  # setup could have installed it: not installing it is the fault
        pytest.fail(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing: run `bash .ci/dev setup` (it installs Debian's chromium and chromium-driver)"
        )
    pytest.skip(
        f"{CHROMIUM} and {CHROMEDRIVER} are missing and apt-get as root is not there to install them: "
        "install Debian's chromium and chromium-driver to run the Airflow UI test"
    )


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # No sandbox (root), nothing that reaches out to the network (there is none), a profile of its own.
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(UI_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("screenshots")

    def take(driver: Any, name: str) -> Path:
        path = folder / name
        assert driver.save_screenshot(str(path)), f"no screenshot {name}"
        if os.environ.get("KUBERAY_DOC_SCREENSHOTS") == "1":
            DOC_IMAGES.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOC_IMAGES / name)
        return path

    return take


def wait_for(driver: Any, condition: Any, what: str, timeout: float = UI_TIMEOUT) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        pytest.fail(
            f"{what} did not show within {timeout} s on {driver.current_url}; the page said:\n"
            f"{driver.find_element('tag name', 'body').text[:3000]}"
        )


def element(driver: Any, xpath: str, what: str) -> Any:
    return wait_for(driver, lambda d: next(iter(d.find_elements("xpath", xpath)), False), what)


def task_details(api_server: str, run_id: str, task_id: str) -> str:
    """The task instance's Details tab, where the UI lists its extra links."""
    return f"{api_server}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{task_id}/details"


def dashboard_link_of(driver: Any) -> Any:
    return element(driver, "//a[normalize-space()='Ray Dashboard']", "the task's Ray Dashboard link")


def test_the_connection_form_shows_the_kuberay_fields_and_stores_the_browser_url(
    api_server: str, browser: Any, screenshots: Any, least_privilege_kubeconfig: Path
) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{api_server}/connections")
    element(browser, "//button[normalize-space()='Add Connection']", "the Add Connection button").click()
    element(browser, "//input[@name='connection_id']", "the connection id field").send_keys("kuberay_ui")
    kind = element(browser, "//*[@role='dialog']//input[@role='combobox']", "the connection type field")
    kind.send_keys("KubeRay")
    kind.send_keys(Keys.ENTER)
    element(
        browser, "//*[@role='dialog']//button[normalize-space()='Extra Fields']", "the Extra Fields section"
    ).click()
    browser_url = element(browser, "//input[@name='element_dashboard_browser_url']", "the dashboard browser URL field")
    labels = (
        "Kube config path",
        "Namespace",
        "Ray dashboard URL template for the workers",
        "Ray dashboard URL for browsers",
    )
    dialog = browser.find_element("xpath", "//*[@role='dialog']")
    wait_for(
        browser, lambda _: all(label in dialog.text for label in labels), f"the fields {labels}"
    )  # the section unfolds
    browser.find_element("xpath", "//input[@name='element_kube_config_path']").send_keys(
        str(least_privilege_kubeconfig)
    )
    browser.find_element("xpath", "//input[@name='element_namespace']").send_keys("default")
    browser_url.send_keys("https://ray.example.com/{namespace}/{cluster}")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", browser_url)
    screenshots(browser, "airflow-connection-form.png")
    element(browser, "//*[@role='dialog']//button[normalize-space()='Save']", "the Save button").click()
    wait_for(browser, lambda d: not d.find_elements("xpath", "//*[@role='dialog']"), "the saved form closing")

    # Read back through the REST API (the server encrypted it with the Fernet key of its own configuration).
    with urllib.request.urlopen(f"{api_server}/api/v2/connections/kuberay_ui", timeout=30) as response:
        saved = json.load(response)
    assert saved["conn_type"] == "kuberay", saved
    # Stored where the provider reads it: the link of a job on this connection is the template rendered.
    extras = json.loads(saved["extra"])
    link = dashboard_link(extras, "kuberay_ui", DashboardTarget("ml", cluster="c1", job_id="j1"))
    assert link == "https://ray.example.com/ml/c1/#/jobs/j1", extras
    # Encrypted with the server's Fernet key, which this process does not have: leave no such row behind.
    urllib.request.urlopen(
        urllib.request.Request(f"{api_server}/api/v2/connections/kuberay_ui", method="DELETE"), timeout=30
    ).close()


def test_the_finished_tasks_link_opens_the_ray_jobs_page(
    api_server: str, browser: Any, screenshots: Any, finished_run: FinishedRun
) -> None:
    expected = finished_run.expected_link
    browser.get(task_details(api_server, finished_run.run_id, "score"))
    link = dashboard_link_of(browser)
    assert link.get_attribute("href") == expected
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    screenshots(browser, "airflow-task-link.png")

    browser.get(expected)  # what a click does (the link opens a new tab)
    job_id = finished_run.outcome["job_id"]
    wait_for(
        browser,
        lambda d: (
            job_id in d.find_element("tag name", "body").text and "SUCCEEDED" in d.find_element("tag name", "body").text
        ),
        f"the Ray dashboard's page of job {job_id}",
    )


def test_without_a_browser_url_the_link_opens_the_page_saying_how_to_set_it(
    api_server: str, browser: Any, screenshots: Any, finished_run: FinishedRun
) -> None:
    browser.get(task_details(api_server, finished_run.run_id, "cluster"))
    link = dashboard_link_of(browser)
    assert link.get_attribute("href").startswith(
        f"{api_server}/{HELP_PATH}?conn_id=kuberay_default&namespace=default&cluster="
    )
    assert link.get_attribute("target") == "_self"  # a page of Airflow's own origin
    link.click()
    text = element(browser, "//h1", "the help page").text
    assert text == "No browser URL for the Ray dashboard"
    body = browser.find_element("tag name", "body").text
    assert "dashboard_browser_url" in body and "kubectl -n default port-forward service/" in body
    screenshots(browser, "airflow-dashboard-link-help.png")
