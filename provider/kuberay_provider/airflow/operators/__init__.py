"""Airflow operators: RayJob (``operators.rayjob``), RayCluster (``operators.raycluster``) and RayService
(``operators.rayservice``) tasks."""

from kuberay_provider.airflow.operators.raycluster import (
    RayClusterCreateOperator,
    RayClusterDeleteOperator,
    RayClusterScaleOperator,
)
from kuberay_provider.airflow.operators.rayservice import RayServiceDeleteOperator, RayServiceOperator
from kuberay_provider.airflow.operators.rayjob import (
    PERMANENT_ERRORS,
    TASK_STATE_KEY,
    RayJobCleanupOperator,
    RayJobOperator,
    run_identity,
)

__all__ = [
    "PERMANENT_ERRORS", "TASK_STATE_KEY", "RayClusterCreateOperator", "RayClusterDeleteOperator",
    "RayClusterScaleOperator", "RayJobCleanupOperator", "RayJobOperator", "RayServiceDeleteOperator",
    "RayServiceOperator", "run_identity",
]
