"""The local API server's fault plan: parsing, who is spared, which faults fit which request."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from kuberay_provider.local.apiserver.faults import CONTROLLER_USER_AGENT, FaultPlan


def request(path: str = "/apis/ray.io/v1/namespaces/default/rayjobs", agent: str = "OpenAPI-Generator/36.0.3/python"):
    return make_mocked_request("GET", path, headers={"User-Agent": agent})


def test_a_plan_is_parsed_from_its_text():
    plan = FaultPlan.parse("rate=0.25,seed=3,kinds=500+429,slow_seconds=0.5")
    assert (plan.rate, plan.seed, plan.kinds, plan.slow_seconds) == (0.25, 3, ("500", "429"), 0.5)


@pytest.mark.parametrize("text", ["rate=2", "kinds=500+teapot", "speed=1", "rate=abc"])
def test_a_bad_plan_is_refused(text: str):
    with pytest.raises(ValueError):
        FaultPlan.parse(text)


def test_no_rate_no_fault_and_the_embedded_controller_is_spared():
    assert all(FaultPlan(rate=0.0).draw(request()) is None for _ in range(100))
    always = FaultPlan(rate=1.0, seed=1)
    assert always.draw(request()) is not None
    assert always.draw(request(agent=CONTROLLER_USER_AGENT)) is None


def test_watch_faults_only_hit_watches_and_gone_only_a_resumed_one():
    plan = FaultPlan(rate=1.0, seed=1, kinds=("drop-watch", "gone"))
    assert plan.draw(request()) is None  # a plain list: neither applies
    assert {plan.draw(request("/apis/ray.io/v1/namespaces/default/rayjobs?watch=true")) for _ in range(20)} == {
        "drop-watch"
    }
    resumed = "/apis/ray.io/v1/namespaces/default/rayjobs?watch=true&resourceVersion=12"
    assert {plan.draw(request(resumed)) for _ in range(50)} == {"drop-watch", "gone"}


def test_about_the_rate_of_requests_get_a_fault():
    plan = FaultPlan(rate=0.1, seed=7)
    hits = sum(plan.draw(request()) is not None for _ in range(2000))
    assert 140 <= hits <= 260
