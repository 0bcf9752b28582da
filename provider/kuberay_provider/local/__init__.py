"""The local control plane: an embedded stand-in for the Kubernetes API server and the KubeRay operator,
backed by a real local Ray. A development and test tool only; production is real Kubernetes + KubeRay.

The Airflow and Prefect adapters never import this package: they reach it over HTTP, like a real cluster.
"""
