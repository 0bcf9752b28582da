"""Kubeconfig and state files of the local control plane.

Everything lives under ``~/.kuberay-provider/local/`` (or ``$KUBERAY_PROVIDER_LOCAL_HOME``):
``kubeconfig`` (cluster ``kuberay-local``, a token user, a context with namespace ``default``), ``token``,
``tls/`` and ``state.json`` (pid, url, paths) which ``local status`` and ``local down`` read.
Files holding secrets are created 0600.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

CLUSTER_NAME = "kuberay-local"
USER_NAME = "kuberay-local-admin"
CONTEXT_NAME = "kuberay-local"
HOME_ENVIRONMENT_VARIABLE = "KUBERAY_PROVIDER_LOCAL_HOME"


def local_home() -> Path:
    configured = os.environ.get(HOME_ENVIRONMENT_VARIABLE)
    return Path(configured).expanduser() if configured else Path.home() / ".kuberay-provider" / "local"


def default_kubeconfig_path() -> Path:
    return local_home() / "kubeconfig"


def default_state_path() -> Path:
    return local_home() / "state.json"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def write_private_file(path: Path, text: str) -> Path:
    """Create or replace ``path`` readable by its owner only (never briefly world-readable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    os.replace(temporary, path)
    os.chmod(path, 0o600)
    return path


def kubeconfig_document(
    server_url: str, token: str, ca_pem: bytes | None = None, namespace: str = "default"
) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": server_url}
    if ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": cluster}],
        "users": [{"name": USER_NAME, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT_NAME, "context": {"cluster": CLUSTER_NAME, "user": USER_NAME, "namespace": namespace}}
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path, server_url: str, token: str, ca_pem: bytes | None = None, namespace: str = "default"
) -> Path:
    document = kubeconfig_document(server_url, token, ca_pem, namespace)
    return write_private_file(path, yaml.safe_dump(document, sort_keys=False))


def write_exec_kubeconfig(
    path: Path,
    server_url: str,
    *,
    token_path: Path,
    service_account: str,
    namespace: str,
    seconds: int,
    ca_path: Path | None = None,
) -> Path:
    """A kubeconfig whose user is an exec plugin (``local.exec_credential``) that hands out a fresh token of
    ``namespace/service_account`` living ``seconds`` on every run, asked for with the token in ``token_path``.
    The plane must allow tokens that short (``LocalControlPlane(min_token_seconds=...)``)."""
    ca_pem = Path(ca_path).read_bytes() if ca_path else None
    document = kubeconfig_document(server_url, "", ca_pem, namespace)
    arguments = [
        "-m",
        "kuberay_provider.local.exec_credential",
        "--server",
        server_url,
        "--token-file",
        str(token_path),
        "--namespace",
        namespace,
        "--service-account",
        service_account,
        "--seconds",
        str(seconds),
    ]
    if ca_path:
        arguments += ["--ca-file", str(ca_path)]
    document["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": arguments,
            "interactiveMode": "Never",
            "provideClusterInfo": False,
        }
    }
    return write_private_file(path, yaml.safe_dump(document, sort_keys=False))


@dataclass(frozen=True)
class ClusterAccess:
    """What a kubeconfig written by write_kubeconfig says: where the plane is and how to get in."""

    server_url: str
    token: str
    ca_pem: bytes | None


def read_kubeconfig(path: Path) -> ClusterAccess:
    document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    cluster = next(c["cluster"] for c in document["clusters"] if c["name"] == CLUSTER_NAME)
    user = next(u["user"] for u in document["users"] if u["name"] == USER_NAME)
    ca_data = cluster.get("certificate-authority-data")
    return ClusterAccess(cluster["server"], user["token"], base64.b64decode(ca_data) if ca_data else None)


@dataclass(frozen=True)
class PlaneState:
    """The running plane as ``local status`` / ``local down`` find it."""

    pid: int
    url: str
    kubeconfig: str
    token_path: str
    ca_path: str = ""

    def save(self, path: Path | None = None) -> Path:
        return write_private_file(path or default_state_path(), json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path | None = None) -> PlaneState | None:
        try:
            data = json.loads(Path(path or default_state_path()).read_text(encoding="utf-8"))
            return cls(**data)
        except (OSError, ValueError, TypeError):
            return None

    def token(self) -> str:
        return Path(self.token_path).read_text(encoding="utf-8").strip()
