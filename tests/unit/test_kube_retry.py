"""Retries through both real clients: 503/429 honouring Retry-After, connection resets, attempt
limits, no retry of other 4xx, and the create-specific rules (re-attach on 409 for a named create;
never blindly retry a generateName create after an ambiguous failure)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import kubernetes.client
import pytest

from kuberay_provider.core.kube.errors import (
    ApiUnavailableError,
    CreateOutcomeUnknownError,
    NotFoundError,
)
from kuberay_provider.core.kube.retry import RetryPolicy, backoff_seconds, retry_after_seconds
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.resources import RAYJOB
from tests.support.fake_apiserver import FakeApiServer
from tests.support.kube_fixtures import *  # noqa: F403 - fixtures
from tests.support.kube_fixtures import rayjob

# A backoff so long that finishing quickly proves the server's Retry-After: 0 was honoured instead.
SLOW_BACKOFF = RetryPolicy(max_attempts=4, max_delay=60.0, initial=30.0, maximum=30.0)


@pytest.mark.parametrize("status", ["503", "429"])
async def test_retry_after_wins_over_backoff(make_kube: Any, apiserver: FakeApiServer, status: str) -> None:
    kube = await make_kube(retry=SLOW_BACKOFF)
    await kube.create(rayjob("job-a"))
    apiserver.inject(status, times=2)
    started = time.monotonic()

    job = await kube.get(RAYJOB, "default", "job-a")

    assert job["metadata"]["name"] == "job-a"
    assert time.monotonic() - started < 5
    assert len(apiserver.requests_to("GET")) == 3


async def test_500_502_style_failures_are_retried_with_backoff(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.inject("500", times=2, method="GET")

    assert await kube.list(RAYJOB, "default") == []
    assert len(apiserver.requests_to("GET")) == 3


async def test_connection_reset_is_retried(kube: Any, apiserver: FakeApiServer) -> None:
    await kube.create(rayjob("job-a"))
    apiserver.inject("reset", times=2, method="GET")

    assert (await kube.get(RAYJOB, "default", "job-a"))["metadata"]["name"] == "job-a"


async def test_gives_up_with_api_unavailable_after_max_attempts(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.inject("503", times=100)

    expected = r"could not get rayjobs.ray.io 'job-a' .* after 4 attempt\(s\)"
    with pytest.raises(ApiUnavailableError, match=expected) as caught:
        await kube.get(RAYJOB, "default", "job-a")

    assert caught.value.attempts == 4
    assert caught.value.status == 503
    assert caught.value.__cause__ is not None
    assert apiserver.token not in str(caught.value)
    assert len(apiserver.requests_to("GET")) == 4


async def test_unreachable_server_is_api_unavailable(make_kube: Any, apiserver: FakeApiServer) -> None:
    kube = await make_kube()
    client = getattr(kube, "sync", kube)
    client.api_client.configuration.host = "http://127.0.0.1:9"  # discard port: connection refused

    with pytest.raises(ApiUnavailableError, match="unavailable"):
        await kube.get(RAYJOB, "default", "job-a")


async def test_tls_failure_is_not_retried(make_kube: Any, apiserver: FakeApiServer) -> None:
    kube = await make_kube()
    client = getattr(kube, "sync", kube)
    client.api_client.configuration.host = apiserver.url.replace("http://", "https://")  # TLS to a plain port

    with pytest.raises(ApiUnavailableError, match="after 1 attempt") as caught:
        await kube.get(RAYJOB, "default", "job-a")

    assert "SSL" in str(caught.value)


def test_sync_client_leaves_explicit_urllib3_retries_alone() -> None:
    default, explicit = kubernetes.client.Configuration(), kubernetes.client.Configuration()
    explicit.retries = 2

    RayObjectsClient(default_client := kubernetes.client.ApiClient(default))
    RayObjectsClient(explicit_client := kubernetes.client.ApiClient(explicit))

    assert default_client.rest_client.pool_manager.connection_pool_kw["retries"].total == 0
    assert explicit_client.rest_client.pool_manager.connection_pool_kw["retries"].total == 2


@pytest.mark.parametrize("fault", ["400", None])
async def test_other_4xx_are_not_retried(kube: Any, apiserver: FakeApiServer, fault: str | None) -> None:
    if fault:
        apiserver.inject(fault)

    with pytest.raises(Exception) as caught:
        await kube.get(RAYJOB, "default", "missing")

    assert caught.type.__name__ == ("BadRequestError" if fault else "NotFoundError")
    assert len(apiserver.requests_to("GET")) == 1


async def test_named_create_reattaches_when_its_own_first_attempt_landed(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.inject("reset_after", method="POST")  # created, but the response is lost

    created = await kube.create(rayjob("job-r"))

    assert created["metadata"]["name"] == "job-r"
    assert created == await kube.get(RAYJOB, "default", "job-r")
    assert [r.method for r in apiserver.requests][:3] == ["POST", "POST", "GET"]
    assert len(apiserver.call(lambda store: list(store.objects))) == 1


async def test_named_create_retried_after_503_does_not_take_over_someone_elses_object(
    kube: Any, apiserver: FakeApiServer
) -> None:
    # 503 means "not processed": a 409 on the retry is a real conflict, not our own landing.
    apiserver.inject("503", method="POST", on_trigger=lambda store: store.create("rayjobs", "default", rayjob("job-o")))

    with pytest.raises(Exception) as caught:
        await kube.create(rayjob("job-o"))

    assert caught.type.__name__ == "AlreadyExistsError"


async def test_generate_name_create_is_not_retried_after_an_ambiguous_failure(
    kube: Any, apiserver: FakeApiServer
) -> None:
    apiserver.inject("reset_after", method="POST")

    with pytest.raises(CreateOutcomeUnknownError, match="may or may not have succeeded"):
        await kube.create(rayjob(None, generateName="nightly-"))

    assert len(apiserver.requests_to("POST")) == 1


async def test_generate_name_create_is_retried_when_the_server_did_not_process_it(
    kube: Any, apiserver: FakeApiServer
) -> None:
    apiserver.inject("503", method="POST", times=2)

    created = await kube.create(rayjob(None, generateName="nightly-"))

    assert created["metadata"]["name"].startswith("nightly-")
    assert len(apiserver.requests_to("POST")) == 3
    assert len(await kube.list(RAYJOB, "default")) == 1


async def test_named_create_is_retried_after_a_reset_before_processing(kube: Any, apiserver: FakeApiServer) -> None:
    apiserver.inject("reset", method="POST")

    created = await kube.create(rayjob("job-n"))

    assert created["metadata"]["name"] == "job-n"
    with pytest.raises(NotFoundError):
        await kube.get(RAYJOB, "default", "other")


# -- the retry decisions themselves ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("0", 0.0), ("3", 3.0), ("1.5", 1.5), ("-4", 0.0), ("soon", None), (None, None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    headers = {} if header is None else {"Retry-After": header}
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=7), usegmt=True)

    assert retry_after_seconds({"Retry-After": header}, now=now) == 7.0


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    policy = RetryPolicy(initial=1.0, maximum=5.0)

    assert all(0 <= backoff_seconds(policy, 1) <= 1.0 for _ in range(50))
    assert all(0 <= backoff_seconds(policy, 3) <= 4.0 for _ in range(50))
    assert all(0 <= backoff_seconds(policy, 10) <= 5.0 for _ in range(50))
    assert len({backoff_seconds(policy, 10) for _ in range(20)}) > 1


def test_retry_policy_defaults_and_validation() -> None:
    assert RetryPolicy() == RetryPolicy(max_attempts=8, max_delay=60.0, initial=0.5, maximum=10.0)
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
