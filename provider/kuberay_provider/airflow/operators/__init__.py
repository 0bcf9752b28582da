"""Airflow operators: RayJob (``operators.rayjob``), RayCluster (``operators.raycluster``) and RayService
(``operators.rayservice``) tasks."""

from kuberay_provider.airflow.operators.cleanup import RayJobCleanupOperator
from kuberay_provider.airflow.operators.common import PERMANENT_ERRORS, TASK_STATE_KEY, run_identity
from kuberay_provider.airflow.operators.raycluster import (
    RayClusterCreateOperator,
    RayClusterDeleteOperator,
    RayClusterScaleOperator,
)
from kuberay_provider.airflow.operators.rayjob import RayJobOperator
from kuberay_provider.airflow.operators.rayservice import RayServiceDeleteOperator, RayServiceOperator

__all__ = [
    "PERMANENT_ERRORS",
    "TASK_STATE_KEY",
    "RayClusterCreateOperator",
    "RayClusterDeleteOperator",
    "RayClusterScaleOperator",
    "RayJobCleanupOperator",
    "RayJobOperator",
    "RayServiceDeleteOperator",
    "RayServiceOperator",
    "run_identity",
]
