"""Airflow's environment for the tests: set BEFORE anything imports airflow (it reads its config once).

Each test session gets its own AIRFLOW_HOME (SQLite, no examples) with two DAG bundles: the test DAGs and
the project's example DAGs; a module that imports airflow calls ``configure_airflow_env()`` first.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from kuberay_provider.airflow.devenv import configure_airflow_home

TEST_DAGS_FOLDER = Path(__file__).resolve().parent / "e2e" / "airflow_dags"
PROJECT_DAGS_FOLDER = Path(__file__).resolve().parent.parent / "dags"


def configure_airflow_env() -> Path:
    """An AIRFLOW_HOME in a temporary directory for this process, made once; returns it."""
    home = os.environ.get("KUBERAY_TEST_AIRFLOW_HOME")
    if home is None:
        home = tempfile.mkdtemp(prefix="kuberay-airflow-home-")
        os.environ["KUBERAY_TEST_AIRFLOW_HOME"] = home
        configure_airflow_home(Path(home), {"test-dags": TEST_DAGS_FOLDER, "project-dags": PROJECT_DAGS_FOLDER})
    return Path(home)
