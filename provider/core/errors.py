"""Errors the core raises. Each names what went wrong precisely enough to act on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a manifest.

    ``path`` is a dotted path with list indices in brackets, e.g.
    ``spec.rayClusterSpec.workerGroupSpecs[0].replicas``; ``rule`` is a short identifier of the rule
    broken (``kuberay:clusterSelector-with-suspend``, ``schema:type``, ``dry-run``...).
    """

    path: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} [{self.rule}]"


class KubeRayProviderError(Exception):
    """Base class of every error the provider raises on purpose."""


class ManifestError(KubeRayProviderError):
    """A manifest could not be read: bad YAML/JSON, not a mapping, not UTF-8, unsupported kind."""


class ValidationError(KubeRayProviderError):
    """A manifest breaks one or more rules. All problems are reported at once."""

    def __init__(self, errors: list[FieldError], *, object_name: str = "") -> None:
        self.errors = list(errors)
        self.object_name = object_name
        head = f"{object_name} is invalid" if object_name else "invalid manifest"
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{head} ({len(self.errors)} problem(s)):\n{lines}")
