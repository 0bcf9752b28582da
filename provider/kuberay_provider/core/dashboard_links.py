"""Links a person opens in a browser to a Ray dashboard.

The workers reach a dashboard through the Kubernetes API server's service proxy (or the worker-facing
``dashboard_url_template``), which a browser cannot open: it has no credentials for the API server, and
in-cluster names do not resolve outside. So a browser link comes from a template of its own, naming where
the deployment exposes its dashboards (an Ingress, a reverse proxy), e.g.
``https://ray.example.com/{namespace}/{cluster}``, with the placeholders of ``PLACEHOLDERS``.

A link goes to Ray's page of the job once its id is known (the dashboard routes in the URL's fragment:
``<dashboard>/#/jobs/<submission id>``), to the Serve page for a RayService, else to the overview.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from kuberay_provider.core.job_request import RayJobRequest
    from kuberay_provider.core.job_runner import RayJobOutcome
    from kuberay_provider.core.status import RayJobState

# namespace: of the RayCluster; cluster: the RayCluster's name; rayjob: the RayJob's name; job_id: the Ray
# job's submission id (KubeRay's status.jobId).
PLACEHOLDERS = ("namespace", "cluster", "rayjob", "job_id")
EXAMPLE_TEMPLATE = "https://ray.example.com/{namespace}/{cluster}"


@dataclass(frozen=True)
class DashboardTarget:
    """What a link points at; "" for what is not known (yet)."""

    namespace: str
    cluster: str = ""
    rayjob: str = ""
    job_id: str = ""
    page: str = ""  # a dashboard page to open when there is no job: "serve"

    @property
    def route(self) -> str:
        """The dashboard's own route (its URL fragment) for this target; "" for the overview."""
        if self.job_id:
            return f"/jobs/{quote(self.job_id, safe='')}"
        return f"/{self.page}" if self.page else ""

    def value(self, placeholder: str) -> str:
        return str(getattr(self, placeholder))

    @classmethod
    def of_request(cls, request: RayJobRequest) -> DashboardTarget:
        """Before the job runs: a RayJob's own cluster has no name yet; a job the provider submits itself
        already has its id."""
        return cls(
            request.resolved_namespace,
            request.selected_cluster or "",
            "" if request.runs_without_rayjob else request.rayjob_name,
            request.submission_id if request.submits_itself else "",
        )

    @classmethod
    def of_rayjob(cls, state: RayJobState) -> DashboardTarget:
        return cls(state.namespace, state.cluster_name, state.name, state.job_id)

    @classmethod
    def of_outcome(cls, outcome: RayJobOutcome) -> DashboardTarget:
        return cls(outcome.namespace, outcome.cluster_name, outcome.rayjob_name, outcome.job_id)


def template_placeholders(template: str) -> list[str]:
    """The placeholders a browser URL template uses; ValueError (saying what may be used) for any other."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ValueError(
            f"the dashboard browser URL {template!r} is not a valid template ({exc}); "
            f"write placeholders as {{namespace}}, e.g. {EXAMPLE_TEMPLATE}"
        ) from exc
    unknown = sorted({name for name in names if name not in PLACEHOLDERS})
    if unknown:
        allowed = ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        raise ValueError(
            f"the dashboard browser URL {template!r} uses {', '.join(f'{{{n}}}' for n in unknown)}; "
            f"it may use only {allowed}, e.g. {EXAMPLE_TEMPLATE}"
        )
    return names


def browser_link(template: str, target: DashboardTarget) -> str | None:
    """The link for ``target``, or None while a placeholder the template uses is not known yet (``{cluster}``
    of a RayJob before KubeRay named its cluster): a link to the wrong place is worse than none.

    A template that places ``{job_id}`` itself, or ends in a fragment of its own, is used as it is;
    otherwise the dashboard's route for the target is appended as the fragment.
    """
    names = template_placeholders(template)
    if any(not target.value(name) for name in names):
        return None
    url = template.format(**{name: quote(target.value(name), safe="") for name in names})
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(
            f"the dashboard browser URL {template!r} gave {url!r}, which a browser cannot open; "
            f"give a whole URL such as {EXAMPLE_TEMPLATE}"
        )
    if "job_id" in names or parts.fragment or not target.route:
        return url
    # The dashboard's assets are relative to its root: under a path prefix that root must end in "/".
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit(parts._replace(path=path, fragment=target.route))
