"""What the least-privilege ServiceAccount was granted by docker/kubernetes/rbac.yaml, what the session used
and what it was refused: printed at the end of the run (tests/conftest.py), so a grant nothing needs shows."""

from __future__ import annotations

import yaml

from kuberay_provider.local.apiserver.rbac import Attributes, Authorizer, rule_allows
from tests.support import summary

SECTION = "least privilege"


def granted_permissions(manifest: str) -> list[tuple[str, str, str]]:
    """(verb, API group, resource) of every rule in the manifest's Roles and ClusterRoles."""
    granted = []
    for document in yaml.safe_load_all(manifest):
        if document and document.get("kind") in ("Role", "ClusterRole"):
            for rule in document.get("rules") or []:
                granted += [
                    (verb, group, resource)
                    for verb in rule["verbs"]
                    for group in rule["apiGroups"]
                    for resource in rule["resources"]
                ]
    return granted


def _grant_used(grant: tuple[str, str, str], used: list[Attributes]) -> bool:
    verb, group, resource = grant
    rule = {"verbs": [verb], "apiGroups": [group], "resources": [resource]}
    return any(rule_allows(rule, attributes) for attributes in used)


def record_usage(manifest: str, authorizer: Authorizer, user: str) -> None:
    used = [attributes for (who, attributes) in authorizer.allowed if who == user and attributes.resource_request]
    denied = sorted({(a.verb, a.resource_path, a.namespace) for (who, a) in authorizer.denied if who == user})
    grants = granted_permissions(manifest)
    unused = [grant for grant in grants if not _grant_used(grant, used)]
    calls = sum(count for (who, attributes), count in authorizer.allowed.items() if who == user)
    summary.add(
        SECTION,
        f"RBAC (docker/kubernetes/rbac.yaml, enforced for {user}): {calls} requests allowed, "
        f"{len(grants) - len(unused)}/{len(grants)} granted verbs used, {len(denied)} refused",
    )
    for verb, group, resource in unused:
        summary.add(SECTION, f"  unused grant: verb {verb} on {resource} (group '{group}')")
    for verb, resource, namespace in denied:
        summary.add(SECTION, f"  refused: {verb} {resource} in '{namespace}'")
