"""`kuberay-provider example`: the README's main job, end to end on this machine.

Starts the local control plane (a development stand-in for Kubernetes + KubeRay, on a real local Ray),
points a throwaway Airflow at it, and runs the example DAG ``dags/batch_inference.py`` for one logical
date with ``dag.test()``: the RayJobOperator validates and creates the day's RayJob, follows it by watch,
streams the Ray job's log into the task log, and KubeRay's cleanup removes the cluster afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = PROJECT_ROOT / "dags"
EXAMPLE_DAG_ID = "batch_inference"


def default_crds_dir() -> Path:
    shared = os.environ.get("KUBERAY_SHARED_DIR")
    return Path(shared) / "crds" if shared else PROJECT_ROOT.parent / "shared" / "kuberay" / "crds"


def add_example_arguments(parser: argparse.ArgumentParser) -> None:
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    parser.add_argument("--date", default=yesterday, help="logical date to score, YYYY-MM-DD (default: yesterday)")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=Path.home() / ".kuberay-provider" / "example-data",
        help="where the input and output partitions live",
    )
    parser.add_argument(
        "--crds", type=Path, default=None, help="KubeRay CRDs to install (default: ../shared/kuberay/crds)"
    )
    parser.add_argument(
        "--airflow-home",
        type=Path,
        default=Path.home() / ".kuberay-provider" / "example-airflow",
        help="the throwaway Airflow home (SQLite) the example uses",
    )


def run_example(args: argparse.Namespace) -> int:
    crds = args.crds or default_crds_dir()
    if not crds.is_dir():
        print(f"error: KubeRay CRDs not found at {crds}; pass --crds DIR or set KUBERAY_SHARED_DIR", file=sys.stderr)
        return 2
    logical_date = dt.datetime.fromisoformat(args.date).replace(tzinfo=dt.UTC)
    data_root = args.data_root.expanduser().resolve()
    # Airflow reads its configuration at first import: configure before anything imports it.
    from kuberay_provider.airflow.devenv import configure_airflow_home, kuberay_connection_env, migrate_database

    configure_airflow_home(args.airflow_home.expanduser().resolve(), {"example-dags": DAGS_FOLDER})
    os.environ["KUBERAY_EXAMPLE_DATA_ROOT"] = str(data_root)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from kuberay_provider.local.plane import LocalControlPlane

    say(f"Starting the local control plane (API server, KubeRay controller, a local Ray) with the CRDs in {crds} ...")
    with LocalControlPlane(crds_dir=crds) as plane:
        say(f"API server at {plane.url}; Airflow connection kuberay_default -> {plane.kubeconfig_path}")
        kuberay_connection_env(Path(plane.kubeconfig_path))
        migrate_database(args.airflow_home.expanduser().resolve())
        say(f"Running DAG {EXAMPLE_DAG_ID} for {args.date} with dag.test() ...")
        state = run_dag(EXAMPLE_DAG_ID, logical_date)
    output = data_root / "output" / f"date={args.date}"
    if state != "success" or not output.is_dir():
        say(f"FAILED: the DAG run ended {state!r}; see the task log above")
        return 1
    say(f"SUCCEEDED: DAG {EXAMPLE_DAG_ID} scored {args.date}; the output partition is {output}")
    return 0


def run_dag(dag_id: str, logical_date: dt.datetime) -> str:
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(DAGS_FOLDER)).get_dag(dag_id)
    if dag is None:
        raise RuntimeError(f"DAG {dag_id} not found in {DAGS_FOLDER}")
    return str(dag.test(logical_date=logical_date).state)


def say(text: str) -> None:
    print(f"[example] {text}", flush=True)
