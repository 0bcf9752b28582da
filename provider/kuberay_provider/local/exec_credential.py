"""A kubeconfig exec plugin for the local control plane: every run prints an ExecCredential holding a
fresh, short-lived ServiceAccount token, as ``aws eks get-token`` or ``gke-gcloud-auth-plugin`` do.

The token comes from the plane's TokenRequest API, asked with a long-lived token read from a file (the
plane's own, by default). Clients that refresh exec credentials per request (or on a 401) keep working
after a token expired; clients that copied the token once get 401. Stdlib only: clients run it often.

    python -m kuberay_provider.local.exec_credential --server URL --token-file F \\
        --namespace NS --service-account NAME --seconds 3 [--ca-file CA]

``kubeconfig.write_exec_kubeconfig`` writes a kubeconfig that runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

DEFAULT_API_VERSION = "client.authentication.k8s.io/v1"


def request_token(
    server: str, token: str, namespace: str, service_account: str, seconds: int, ca_file: str | None
) -> dict[str, str]:
    """TokenRequest for ``namespace/service_account``: its ``status`` (token, expirationTimestamp)."""
    url = (
        f"{server.rstrip('/')}/api/v1/namespaces/{quote(namespace, safe='')}/serviceaccounts/"
        f"{quote(service_account, safe='')}/token"
    )
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}}
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"},
    )
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https") else None
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return dict(json.load(response)["status"])


def exec_credential(status: dict[str, str], api_version: str) -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "status": {"token": status["token"], "expirationTimestamp": status["expirationTimestamp"]},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--server", required=True)
    parser.add_argument(
        "--token-file", required=True, help="a long-lived token allowed to create serviceaccounts/token"
    )
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--service-account", required=True)
    parser.add_argument("--seconds", type=int, required=True, help="the issued token's lifetime")
    parser.add_argument("--ca-file", default=None)
    args = parser.parse_args(argv)
    # Answer in the apiVersion the client asked in (the kubeconfig's exec.apiVersion).
    asked = json.loads(os.environ.get("KUBERNETES_EXEC_INFO") or "{}").get("apiVersion") or DEFAULT_API_VERSION
    try:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
        status = request_token(args.server, token, args.namespace, args.service_account, args.seconds, args.ca_file)
    except (OSError, urllib.error.URLError, KeyError, ValueError) as exc:  # never print the token
        print(
            f"exec_credential: could not get a token for {args.namespace}/{args.service_account} from "
            f"{args.server}: {exc}",
            file=sys.stderr,
        )
        return 1
    json.dump(exec_credential(status, asked), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
