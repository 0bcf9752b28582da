"""Kubernetes access for ray.io/v1 objects (RayJob, RayCluster, RayService), orchestrator-neutral.

The core receives an official API client and never reads a kubeconfig itself:

* ``sync_client.RayObjectsClient(kubernetes.client.ApiClient, retry=None)``
* ``async_client.AsyncRayObjectsClient(kubernetes_asyncio.client.ApiClient, retry=None, reauthenticate=None)``
  (``reauthenticate`` reloads credentials after a 401: kubernetes_asyncio never refreshes an exec token)

Both have the same methods (create, get, find, list, list_with_version, patch, delete, watch,
read_service, read_crd, proxy_connection, api_server_url) and share everything but the I/O:
``api_requests`` (what is sent), ``errors`` (HTTP → provider errors), ``retry`` (tenacity policy,
Retry-After, create ambiguity), ``watch`` (resume / 410-relist state machine), ``proxy``
(service-proxy URL, and credentials read per request, for the Ray Jobs API). Submodules are not imported here so
that using one client does not import the other's HTTP stack.
"""
