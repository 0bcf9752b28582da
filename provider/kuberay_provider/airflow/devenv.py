"""A throwaway Airflow environment for running DAGs on a laptop (the example, the tests).

Airflow reads its configuration once, at first import, so this module imports nothing of Airflow and
must be called before anything else imports it. Production Airflow is configured the usual way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

_LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


def configure_airflow_home(home: Path, dag_folders: Mapping[str, Path]) -> None:
    """Point this process's Airflow at ``home`` (SQLite, no example DAGs) with one DAG bundle per folder.

    ``dag.test()`` syncs the bundle its DAG comes from, so every folder a DAG is loaded from is a bundle.
    """
    home.mkdir(parents=True, exist_ok=True)
    first_folder = next(iter(dag_folders.values()))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(first_folder),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                [
                    {"name": name, "classpath": _LOCAL_BUNDLE, "kwargs": {"path": str(path)}}
                    for name, path in dag_folders.items()
                ]
            ),
        }
    )
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "INFO")


def migrate_database(home: Path) -> None:
    """``airflow db migrate`` once per home (about 4 s on SQLite); later calls are free."""
    marker = home / ".migrated"
    if not marker.exists():
        airflow = Path(sys.executable).parent / "airflow"
        subprocess.run([str(airflow), "db", "migrate"], check=True, env=os.environ.copy(), capture_output=True)
        marker.touch()
    from airflow import settings

    settings.configure_orm()  # type: ignore[no-untyped-call]  # Airflow's settings module is not annotated


def kuberay_connection_env(kubeconfig: Path, namespace: str = "default", conn_id: str = "kuberay_default") -> None:
    """An Airflow connection of type ``kuberay`` to a kubeconfig, through the environment."""
    connection = {"conn_type": "kuberay", "extra": {"kube_config_path": str(kubeconfig), "namespace": namespace}}
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(connection)
