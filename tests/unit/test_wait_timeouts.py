"""Every wait that runs out of time raises a ``core.errors.WaitTimeout``: one type to catch, saying what was
waited on, for how long and the last state seen; a timeout is worth another try, never a permanent error."""

from __future__ import annotations

from kuberay_provider.core.clusters import ClusterTarget, ClusterTracker, RayClusterState, RayClusterTimeout
from kuberay_provider.core.errors import WaitTimeout, is_permanent
from kuberay_provider.core.kube.watch import WatchEvent
from kuberay_provider.core.rayservice_state import RayServiceState
from kuberay_provider.core.rayservice_wait import RayServiceTimeout, ServiceTracker


def test_a_cluster_wait_times_out_with_what_it_waited_on_and_the_last_state() -> None:
    tracker = ClusterTracker("ns", "c", ClusterTarget.READY, timeout=30.0)
    tracker.observe(WatchEvent("MODIFIED", {"metadata": {"namespace": "ns", "name": "c"}, "status": {}}))
    error = tracker.timed_out()
    assert isinstance(error, RayClusterTimeout) and isinstance(error, WaitTimeout)
    assert (error.subject, error.timeout) == ("RayCluster ns/c", 30.0)
    assert isinstance(error.state, RayClusterState) and error.state.name == "c"
    assert "ns/c" in str(error) and "30.0 s" in str(error)
    assert not is_permanent(error)


def test_a_rayservice_wait_times_out_with_what_it_waited_on_and_no_state_when_none_was_seen() -> None:
    error = ServiceTracker("ns", "svc", timeout=5.0).timed_out()
    assert isinstance(error, RayServiceTimeout) and isinstance(error, WaitTimeout)
    assert (error.subject, error.timeout, error.state) == ("RayService ns/svc", 5.0, None)
    assert not is_permanent(error)


def test_the_existing_constructors_still_take_a_message_and_a_state() -> None:
    state = RayServiceState.from_object({"metadata": {"namespace": "ns", "name": "svc"}})
    error = RayServiceTimeout("not ready", state)
    assert (str(error), error.state, error.subject, error.timeout) == ("not ready", state, "", None)
