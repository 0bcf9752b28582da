"""Credentials that expire mid-wait, as an EKS or GKE exec plugin's do: a ServiceAccount allowed everything
in one namespace, and a kubeconfig whose exec plugin (``kuberay_provider.local.exec_credential``) hands out
a fresh token of it, living a few seconds, on every run. The plane must allow tokens that short
(``LocalControlPlane(min_token_seconds=1)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kuberay_provider.local.kubeconfig import write_exec_kubeconfig

SERVICE_ACCOUNT = "expiring-tokens"


def grant_everything_in(admin: Any, namespace: str, service_account: str = SERVICE_ACCOUNT) -> None:
    """With the plane's admin ApiClient: the ServiceAccount, and a Role allowing it all in ``namespace``."""
    from kubernetes import client

    client.CoreV1Api(admin).create_namespaced_service_account(namespace, {"metadata": {"name": service_account}})
    rbac = client.RbacAuthorizationV1Api(admin)
    rbac.create_namespaced_role(
        namespace,
        {"metadata": {"name": service_account}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": service_account},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": service_account},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        },
    )


def expiring_kubeconfig(plane: Any, namespace: str, directory: Path, seconds: int = 2) -> Path:
    """Grant the ServiceAccount, then write the kubeconfig whose tokens live ``seconds``."""
    with plane.api_client() as admin:
        grant_everything_in(admin, namespace)
    return write_exec_kubeconfig(
        directory / "expiring-kubeconfig",
        plane.url,
        token_path=plane.token_path,
        service_account=SERVICE_ACCOUNT,
        namespace=namespace,
        seconds=seconds,
        ca_path=plane.ca_path,
    )


def sync_api_client(kubeconfig: Path) -> Any:
    """An official ApiClient loaded from ``kubeconfig`` as users load one (the library's refresh hook on)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)
