"""The Ray Jobs API's error answers, with their HTTP status code.

Ray's ``JobSubmissionClient`` turns every error answer into a bare ``RuntimeError`` holding the response's
text (``_raise_error`` in ``ray/dashboard/modules/dashboard_sdk.py``), so the status is lost. Whether a
job exists must be read from the status, 404, never from that text: a proxy's 502 page or a dashboard's
500 may well say "not found" or quote a 404, and a 404's body need not. Clients with the
``KeepsStatusCode`` mixin (``status_keeping_client_class``) raise ``JobsApiError``, which keeps the code.

Used by ``core.ray_jobs`` and by the local control plane's Ray backend alike.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

NOT_FOUND = 404


class JobsApiError(RuntimeError):
    """An error answer of the Ray Jobs API. A RuntimeError, as Ray's own, for callers catching one."""

    def __init__(self, status_code: int, text: str) -> None:
        # Ray's own wording, so messages (and the hints read from them) stay as they were.
        super().__init__(f"Request failed with status code {status_code}: {text}.")
        self.status_code = status_code


def is_not_found(error: BaseException) -> bool:
    """The Jobs API answered 404: no job of that id (whatever the answer's text says)."""
    return isinstance(error, JobsApiError) and error.status_code == NOT_FOUND


class KeepsStatusCode:
    """Mixin for a ``JobSubmissionClient`` subclass (put it first): every SDK call's error answer raises
    ``JobsApiError``."""

    def _raise_error(self, r: Any) -> NoReturn:  # r: the requests.Response Ray got
        raise JobsApiError(int(r.status_code), str(r.text))


@functools.cache
def status_keeping_client_class() -> type[JobSubmissionClient]:
    """``JobSubmissionClient`` whose error answers raise ``JobsApiError``. Built on first use: importing
    Ray costs about a second, paid only by code that talks to a dashboard."""
    from ray.job_submission import JobSubmissionClient

    class StatusKeepingJobSubmissionClient(KeepsStatusCode, JobSubmissionClient):
        pass

    return StatusKeepingJobSubmissionClient
