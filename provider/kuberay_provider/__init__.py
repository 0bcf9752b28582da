"""kuberay-provider: run Ray workloads on Kubernetes (KubeRay) from Airflow and Prefect.

Architecture (one folder each):
  core/      orchestrator-neutral: manifests, validation, status, Kubernetes and Ray Jobs access, naming
  airflow/   thin Airflow adapter (hooks, operators, sensors, triggers)
  prefect/   thin Prefect adapter (blocks, tasks, flows)
  local/     the local control plane: a development stand-in for Kubernetes + the KubeRay operator
"""

__version__ = "0.1.0"
