"""Errors the core raises. Each names what went wrong precisely enough to act on.

Which errors a retry cannot fix is decided here, once, by type: every such error subclasses
``PermanentError``. Airflow fails the task at once on them (no retries) and Prefect's
``retry_condition_fn`` spares its retries; everything else (a failed Ray job, a lost connection, a
``TypeError`` in user code) is worth another try.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

StateT = TypeVar("StateT")


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


class WaitTimeout(KubeRayProviderError, Generic[StateT]):
    """A wait ran out of time; a retry may well see it through (a longer timeout lets it).

    ``state``: the last state seen of what was waited on (None when none was seen); ``subject``: what was
    waited on, e.g. "RayCluster ns/name" ("" when the raiser did not say); ``timeout``: the seconds waited
    (None when not known).
    """

    def __init__(
        self, message: str, state: StateT | None = None, *, subject: str = "", timeout: float | None = None
    ) -> None:
        super().__init__(message)
        self.state = state
        self.subject = subject
        self.timeout = timeout


class PermanentError(KubeRayProviderError):
    """Base class of the errors no retry can fix: the task's definition or the cluster must change first."""


class ConfigurationError(PermanentError, ValueError):
    """The task's arguments are wrong or contradict each other. Still a ValueError for callers catching one."""


class ArgumentError(ConfigurationError, TypeError):
    """An unknown keyword (a typo), or two that exclude each other: a TypeError too, as Python reports a bad call."""


class NameTakenError(PermanentError):
    """A RayJob or RayCluster of the wanted name exists but belongs to another run (its run-key label differs)."""


class ClusterNotFoundError(PermanentError):
    """The RayCluster (or Ray head Service) a job should run on does not exist."""


class ManifestError(PermanentError):
    """A manifest could not be read: bad YAML/JSON, not a mapping, not UTF-8, unsupported kind."""


class ValidationError(PermanentError):
    """A manifest breaks one or more rules. All problems are reported at once."""

    def __init__(self, errors: list[FieldError], *, object_name: str = "") -> None:
        self.errors = list(errors)
        self.object_name = object_name
        head = f"{object_name} is invalid" if object_name else "invalid manifest"
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{head} ({len(self.errors)} problem(s)):\n{lines}")


# The one list of errors a retry cannot fix, for ``isinstance`` and ``except`` alike (Airflow, Prefect).
PERMANENT_ERRORS: tuple[type[KubeRayProviderError], ...] = (PermanentError,)


def is_permanent(error: BaseException) -> bool:
    """True when retrying cannot help: fail at once instead of spending the task's retries."""
    return isinstance(error, PERMANENT_ERRORS)
