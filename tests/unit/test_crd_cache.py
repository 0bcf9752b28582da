"""The installed CRD, read once per process and API server, and read again when it may have changed (#23).

Against the local control plane's API server (real CRDs, its own schema validation, 422 on refusal); every
request the provider's client sends is recorded at the client's ``call_api``, so the tests count them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberay_provider.core.errors import ValidationError
from kuberay_provider.core.kube.api_requests import Target
from kuberay_provider.core.kube.errors import InvalidError
from kuberay_provider.core.kube.sync_client import RayObjectsClient
from kuberay_provider.core.lifecycle import RayJobLifecycle
from kuberay_provider.core.resources import RAYJOB
from kuberay_provider.core.spec import rayjob
from kuberay_provider.core.validated_create import create_validated
from kuberay_provider.core.validation import SchemaRegistry, installed_schemas
from kuberay_provider.core.validation.installed import forget_installed_schemas
from kuberay_provider.local.apiserver.server import install_crds
from kuberay_provider.local.plane import LocalControlPlane

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/rayjobs.ray.io"


class Recorded:
    """The requests an ApiClient sent: (method, path, query) in order."""

    def __init__(self, api_client: Any) -> None:
        self.calls: list[tuple[str, str, dict[str, str]]] = []
        send = api_client.call_api

        def recording(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((kwargs["method"], kwargs["resource_path"], dict(kwargs.get("query_params") or [])))
            return send(*args, **kwargs)

        api_client.call_api = recording

    def crd_reads(self) -> int:
        return sum(1 for method, path, _ in self.calls if method == "GET" and path == CRD_PATH)

    def creates(self) -> list[dict[str, str]]:
        return [query for method, path, query in self.calls if method == "POST" and path.endswith("/rayjobs")]


@pytest.fixture(scope="module")
def plane(crds_dir: Path) -> Iterator[LocalControlPlane]:
    with LocalControlPlane(crds_dir=crds_dir, controller=False) as plane:
        yield plane


@pytest.fixture(scope="module")
def original_crd(crds_dir: Path) -> dict[str, Any]:
    return yaml.load(
        (crds_dir / "ray.io_rayjobs.yaml").read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    )


@pytest.fixture
def rayjob_crd(plane: LocalControlPlane, original_crd: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The RayJob CRD as installed, to change; whatever a test installs instead is undone after it."""
    forget_installed_schemas()
    changed = copy.deepcopy(original_crd)
    yield changed
    if changed != original_crd:
        install(plane, original_crd)
    forget_installed_schemas()


def install(plane: LocalControlPlane, crd: dict[str, Any]) -> None:
    plane.run_in_loop(lambda: install_crds(plane.cluster, [crd]))


def spec_properties(crd: dict[str, Any]) -> dict[str, Any]:
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]


def job(name: str, **spec: Any) -> dict[str, Any]:
    return rayjob(name, "default", entrypoint="python x.py", cluster_selector={"ray.io/cluster": "shared"}, **spec)


def lifecycle_on(api_client: Any, *, server_dry_run: bool = False) -> RayJobLifecycle:
    """What a task builds: a lifecycle on its client, with the process's copy of the installed CRDs."""
    return RayJobLifecycle(
        RayObjectsClient(api_client), schemas=installed_schemas(api_client), server_dry_run=server_dry_run
    )


def launch(lifecycle: RayJobLifecycle, manifest: dict[str, Any]) -> dict[str, Any]:
    lifecycle.validate(manifest)
    return lifecycle.create_or_attach(manifest).manifest


def test_the_crd_is_read_once_for_many_creates_on_one_client(plane: LocalControlPlane, rayjob_crd: Any) -> None:
    with plane.api_client() as api_client, plane.api_client() as other_client:
        recorded, other = Recorded(api_client), Recorded(other_client)
        for index in range(5):
            launch(lifecycle_on(api_client), job(f"once-{index}"))
        launch(lifecycle_on(other_client), job("once-other"))  # another client of the same server

        assert recorded.crd_reads() == 1 and other.crd_reads() == 0
        # Per RayJob: the create alone, no dry run by default.
        assert recorded.creates() == [{}] * 5
        assert len(recorded.calls) == 1 + 5  # one request per RayJob: nothing existed, so it was never looked for


def test_a_crd_that_now_allows_a_field_is_noticed(plane: LocalControlPlane, rayjob_crd: dict[str, Any]) -> None:
    with plane.api_client() as api_client:
        recorded = Recorded(api_client)
        launch(lifecycle_on(api_client), job("before-upgrade"))  # the copy is read
        spec_properties(rayjob_crd)["newKnob"] = {"type": "string"}
        install(plane, rayjob_crd)  # KubeRay upgraded: a field the copy does not know

        created = launch(
            lifecycle_on(api_client), {**job("after-upgrade"), "spec": {**job("x")["spec"], "newKnob": "on"}}
        )

        assert created["spec"]["newKnob"] == "on"
        assert recorded.crd_reads() == 2  # refused by the stale copy, so read again: the new one allows it


def test_a_crd_that_now_forbids_a_value_is_noticed_when_the_server_refuses(
    plane: LocalControlPlane, rayjob_crd: dict[str, Any]
) -> None:
    with plane.api_client() as api_client:
        recorded = Recorded(api_client)
        launch(lifecycle_on(api_client), job("before-tightening"))
        spec_properties(rayjob_crd)["entrypoint"]["maxLength"] = 5
        install(plane, rayjob_crd)
        lifecycle = lifecycle_on(api_client)
        tightened = job("after-tightening")
        lifecycle.validate(tightened)  # the stale copy passes it

        with pytest.raises(ValidationError) as refused:
            lifecycle.create_or_attach(tightened)

        assert not isinstance(refused.value, InvalidError)  # ours, from the re-read CRD: every field named
        assert any(error.path == "spec.entrypoint" for error in refused.value.errors)
        assert recorded.crd_reads() == 2
        assert len(recorded.creates()) == 2  # before, and the one refused: not retried, the new CRD refuses it
        assert RayObjectsClient(api_client).find(RAYJOB, "default", "after-tightening") is None


def test_an_invalid_spec_fails_before_any_create_request(plane: LocalControlPlane, rayjob_crd: Any) -> None:
    with plane.api_client() as api_client:
        recorded = Recorded(api_client)
        lifecycle = lifecycle_on(api_client)
        invalid = {**job("invalid"), "spec": {**job("x")["spec"], "backoffLimit": "three", "noSuchField": 1}}

        with pytest.raises(ValidationError) as refused:
            launch(lifecycle, invalid)

        assert {error.path for error in refused.value.errors} >= {"spec.backoffLimit", "spec.noSuchField"}
        assert recorded.creates() == []
        assert recorded.crd_reads() == 2  # the copy, and once more to be sure the CRD did not change meanwhile


@pytest.mark.parametrize("server_dry_run", [True, False])
def test_the_server_dry_run_is_a_choice(plane: LocalControlPlane, rayjob_crd: Any, server_dry_run: bool) -> None:
    with plane.api_client() as api_client:
        recorded = Recorded(api_client)

        launch(lifecycle_on(api_client, server_dry_run=server_dry_run), job(f"dry-run-{str(server_dry_run).lower()}"))

        assert recorded.creates() == ([{"dryRun": "All"}, {}] if server_dry_run else [{}])


def test_retrying_every_create_makes_no_duplicate(plane: LocalControlPlane, rayjob_crd: Any) -> None:
    with plane.api_client() as api_client:
        for _ in range(2):
            for index in range(3):
                launch(lifecycle_on(api_client), job(f"retried-{index}"))
        names = [o["metadata"]["name"] for o in RayObjectsClient(api_client).list(RAYJOB, "default")]
        assert sorted(n for n in names if n.startswith("retried-")) == ["retried-0", "retried-1", "retried-2"]


class RefusingOnce:
    """A kube whose first create is refused as invalid (the CRD changed under the copy), then accepted."""

    def __init__(self) -> None:
        self.creates: list[bool] = []

    def create(self, manifest: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        self.creates.append(dry_run)
        if len(self.creates) == 1:
            raise InvalidError([], target=Target("create", "rayjobs.ray.io", "default", manifest["metadata"]["name"]))
        return manifest


class ChangedRegistry(SchemaRegistry):
    def __init__(self, changed: bool) -> None:
        super().__init__()
        self.changed, self.refreshed = changed, 0

    def refresh(self, kind: str) -> bool:
        self.refreshed += 1
        return self.changed


def test_a_refusal_after_the_crd_changed_is_retried_once_and_one_without_a_change_is_raised() -> None:
    kube = RefusingOnce()
    changed = ChangedRegistry(changed=True)
    with pytest.raises(ValidationError):  # the registry has no RayJob schema: "no CRD schema is loaded"
        create_validated(kube, job("x"), changed)
    assert changed.refreshed >= 1 and kube.creates == [False]

    kube, unchanged = RefusingOnce(), ChangedRegistry(changed=False)
    with pytest.raises(InvalidError):
        create_validated(kube, job("x"), unchanged)
    assert unchanged.refreshed == 1 and kube.creates == [False]


def test_a_refusal_after_the_crd_changed_creates_again_when_the_new_crd_passes_it(crds_dir: Path) -> None:
    class Passing(ChangedRegistry):
        def __init__(self) -> None:
            super().__init__(changed=True)
            self.real = SchemaRegistry.from_directory(crds_dir)

        def for_kind(self, kind: str) -> Any:
            return self.real.for_kind(kind)

    kube = RefusingOnce()
    created = create_validated(kube, job("x"), Passing())
    assert created["metadata"]["name"] == "x" and kube.creates == [False, False]


def test_a_raycluster_refused_after_the_crd_changed_names_the_field_from_the_crd_read_again(
    plane: LocalControlPlane, crds_dir: Path
) -> None:
    """RayClusters take the same create path as RayJobs (with a server dry run always first): a stale copy
    of the CRD that passes what the new CRD forbids ends in a ValidationError naming the field, not a bare
    422, and nothing is created."""
    from kuberay_provider.core.clusters import RayClusterLifecycle
    from kuberay_provider.core.resources import RAYCLUSTER
    from kuberay_provider.core.spec import raycluster, simple_cluster_spec

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    original = yaml.load((crds_dir / "ray.io_rayclusters.yaml").read_text(), Loader=loader)
    forget_installed_schemas()
    try:
        with plane.api_client() as api_client:
            spec = simple_cluster_spec(image="rayproject/ray:2.60.0", ray_version="2.60.0")
            base = {"spec": spec}
            lifecycle = RayClusterLifecycle(RayObjectsClient(api_client), schemas=installed_schemas(api_client))
            lifecycle.validate(raycluster("copy-read", "default", base=base))  # the copy is read here
            tightened = copy.deepcopy(original)
            spec_properties(tightened)["rayVersion"]["maxLength"] = 3
            install(plane, tightened)
            manifest = raycluster("after-tightening", "default", base=base)
            lifecycle.validate(manifest)  # the stale copy passes it

            with pytest.raises(ValidationError) as refused:
                lifecycle.create_or_attach(manifest)

            assert not isinstance(refused.value, InvalidError)
            assert any(error.path == "spec.rayVersion" for error in refused.value.errors)
            assert RayObjectsClient(api_client).find(RAYCLUSTER, "default", "after-tightening") is None
    finally:
        install(plane, original)
        forget_installed_schemas()
