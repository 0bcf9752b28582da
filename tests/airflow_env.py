"""Airflow's environment for the tests: set BEFORE anything imports airflow (it reads its config once).

Each test session gets its own AIRFLOW_HOME (SQLite, no examples) and the test DAG folder; a module that
imports airflow calls ``configure_airflow_env()`` first.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

TEST_DAGS_FOLDER = Path(__file__).resolve().parent / "e2e" / "airflow_dags"
PROJECT_DAGS_FOLDER = Path(__file__).resolve().parent.parent / "dags"


def configure_airflow_env() -> Path:
    """An AIRFLOW_HOME in a temporary directory for this process, made once; returns it."""
    home = os.environ.get("KUBERAY_TEST_AIRFLOW_HOME")
    if home is None:
        home = tempfile.mkdtemp(prefix="kuberay-airflow-home-")
        os.environ["KUBERAY_TEST_AIRFLOW_HOME"] = home
        os.environ["AIRFLOW_HOME"] = home
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(TEST_DAGS_FOLDER)
        os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")
        # Two bundles: the test DAGs and the project's example DAGs (dag.test() syncs the DAG's bundle).
        local = "airflow.dag_processing.bundles.local.LocalDagBundle"
        os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([
            {"name": "test-dags", "classpath": local, "kwargs": {"path": str(TEST_DAGS_FOLDER)}},
            {"name": "project-dags", "classpath": local, "kwargs": {"path": str(PROJECT_DAGS_FOLDER)}},
        ])
    return Path(home)
