"""A small Kubernetes API server for the local control plane.

It serves what the provider, the local controller and kubectl use: discovery and OpenAPI, core v1
namespaces / configmaps / secrets / services / pods / events / endpoints, CustomResourceDefinitions and
the custom resources they define (ray.io), with watch, the /status subresource, every patch type,
garbage collection through ownerReferences, and the service proxy.

Modules: store (objects, resourceVersion, watch history), selectors, patching, schema (pruning,
defaulting, validation), objectmeta, resources (the semantics), discovery, tables, watch, proxy, auth and
rbac (tokens, RBAC), impersonation (``kubectl --as``), access_review (``kubectl auth can-i``), handlers
(HTTP) and server (the aiohttp app and its runner).
"""

from .resources import Cluster, DeleteOptions, WriteOptions
from .server import ApiServer, ApiServerSettings, build_app, install_crds, load_crd_documents

__all__ = [
    "ApiServer",
    "ApiServerSettings",
    "Cluster",
    "DeleteOptions",
    "WriteOptions",
    "build_app",
    "install_crds",
    "load_crd_documents",
]
