"""TaskFlow decorators: ``@task.kuberay`` (registered through the provider info's ``task-decorators``)."""

from kuberay_provider.airflow.decorators.kuberay import kuberay_task

__all__ = ["kuberay_task"]
