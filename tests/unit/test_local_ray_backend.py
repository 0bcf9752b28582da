"""Ray backends: ConfigMap materialisation and path rewriting, the fake's scripts, and a real local Ray."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kuberay_provider.local.ray_backend import (
    ClusterRequest,
    ConfigMapMount,
    FakeRayBackend,
    JobAlreadyExistsError,
    JobRequest,
    JobScript,
    JobSubmissionError,
    RayBackend,
)
from kuberay_provider.local.ray_backend.volumes import PathMap, materialise


def test_materialise_writes_files_and_maps_paths(tmp_path: Path) -> None:
    paths = materialise([ConfigMapMount("/home/ray/samples", {"sample_code.py": "print(1)"})], tmp_path)
    local = tmp_path / "home/ray/samples"
    assert (local / "sample_code.py").read_text() == "print(1)"
    assert paths.rewrite("python /home/ray/samples/sample_code.py --x 1") == f"python {local}/sample_code.py --x 1"
    assert paths.rewrite("cd /home/ray/samples && ls") == f"cd {local} && ls"
    assert (
        paths.rewrite("python /home/ray/samples2/x.py /opt/home/ray/samples/y")
        == "python /home/ray/samples2/x.py /opt/home/ray/samples/y"
    )
    assert paths.rewrite_runtime_env({"working_dir": "/home/ray/samples", "pip": ["x"]}) == {
        "working_dir": str(local),
        "pip": ["x"],
    }


def test_materialise_refuses_paths_escaping_the_mount(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        materialise([ConfigMapMount("/code", {"../../evil": "x"})], tmp_path)


def test_longest_mount_wins() -> None:
    paths = PathMap({"/a": "/L/a", "/a/b": "/L/ab"})
    assert paths.rewrite("/a/b/c /a/c") == "/L/ab/c /L/a/c"


async def test_fake_backend_follows_its_script_on_its_clock() -> None:
    now = [1000.0]
    fake = FakeRayBackend(now=lambda: now[0], default_script=JobScript(pending_seconds=1, running_seconds=2))
    assert isinstance(fake, RayBackend)
    endpoints = await fake.ensure_cluster(ClusterRequest("ns", "c", ray_version="2.1.0"))
    assert endpoints.dashboard_url and endpoints.warnings
    await fake.submit_job("ns", "c", JobRequest("j", "python x.py"))
    with pytest.raises(JobAlreadyExistsError):
        await fake.submit_job("ns", "c", JobRequest("j", "python x.py"))
    statuses = []
    for _ in range(4):
        statuses.append((await fake.job_info("ns", "c", "j")).status)  # type: ignore[union-attr]
        now[0] += 1
    assert statuses == ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert await fake.job_info("ns", "c", "nope") is None


async def test_fake_backend_delete_cluster_stops_its_jobs() -> None:
    fake = FakeRayBackend(default_script=JobScript(final_status=None))
    fake.script_entrypoint("bad", JobScript(reject_submission="nope"))
    await fake.submit_job("ns", "c", JobRequest("j", "python x.py"))
    with pytest.raises(JobSubmissionError):
        await fake.submit_job("ns", "c", JobRequest("k", "python bad.py"))
    await fake.delete_cluster("ns", "c")
    assert (await fake.job_info("ns", "c", "j")).status == "STOPPED"  # type: ignore[union-attr]


def zipped_module(name: str, main: str) -> bytes:
    """A package as the Ray Jobs SDK uploads a py_modules folder: the folder itself at the zip's top."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as package:
        package.writestr(f"{name}/__init__.py", "")
        package.writestr(f"{name}/__main__.py", main)
    return buffer.getvalue()


async def test_the_fakes_jobs_api_runs_a_module_of_an_uploaded_package_and_keeps_packages_per_cluster() -> None:
    import aiohttp

    fake = FakeRayBackend(default_script=JobScript(running_seconds=0.1), jobs_api=True)
    url = (await fake.ensure_cluster(ClusterRequest("ns", "c"))).dashboard_url
    other = (await fake.ensure_cluster(ClusterRequest("ns", "d"))).dashboard_url
    try:
        async with aiohttp.ClientSession() as session:
            package = f"{url}/api/packages/gcs/_ray_pkg_1.zip"
            assert (await session.get(package)).status == 404
            assert (
                await session.put(
                    package, data=zipped_module("shipped", "import sys; print('out', 6 * 7); sys.exit(3)")
                )
            ).status == 200
            assert (await session.get(package)).status == 200 and (
                await session.get(f"{other}/api/packages/gcs/_ray_pkg_1.zip")
            ).status == 404
            body = {
                "entrypoint": "python -m shipped",
                "submission_id": "j",
                "runtime_env": {"py_modules": ["gcs://_ray_pkg_1.zip"]},
                "metadata": {"k": "v"},
            }
            assert (await (await session.post(f"{url}/api/jobs/", json=body)).json())["submission_id"] == "j"
            assert (await session.post(f"{url}/api/jobs/", json=body)).status == 400  # the id is taken
            for _ in range(200):
                info = await (await session.get(f"{url}/api/jobs/j")).json()
                if info["status"] in ("SUCCEEDED", "FAILED"):
                    break
                await asyncio.sleep(0.05)
            # The process decides: its exit code fails the job, its output is the log.
            assert (info["status"], info["driver_exit_code"], info["metadata"]) == ("FAILED", 3, {"k": "v"})
            assert (await (await session.get(f"{url}/api/jobs/j/logs")).json())["logs"] == "out 42\n"
            assert (await session.get(f"{other}/api/jobs/j")).status == 404
    finally:
        await fake.close()


@pytest.fixture
def local_ray(ray_backend):
    """The session's shared real Ray head (tests/conftest.py): starting a second one costs 10-25 s."""
    return ray_backend


@pytest.mark.ray
@pytest.mark.timeout(240)
async def test_local_ray_backend_runs_a_job_from_a_configmap(local_ray) -> None:
    mount = ConfigMapMount(
        "/home/ray/samples", {"hello.py": "import ray\nray.init()\nprint('hello from the configmap')\n"}
    )
    endpoints = await local_ray.ensure_cluster(
        ClusterRequest("default", "c1", ray_version=local_ray.ray_version, config_map_mounts=(mount,))
    )
    assert endpoints.dashboard_url.startswith("http://127.0.0.1:") and not endpoints.warnings
    await local_ray.submit_job(
        "default", "c1", JobRequest("hello-1", "python /home/ray/samples/hello.py", metadata={"owner": "test"})
    )
    with pytest.raises(JobAlreadyExistsError):
        await local_ray.submit_job("default", "c1", JobRequest("hello-1", "python /home/ray/samples/hello.py"))
    info = None
    for _ in range(120):
        info = await local_ray.job_info("default", "c1", "hello-1")
        if info is not None and info.is_terminal:
            break
        await asyncio.sleep(0.5)
    assert info is not None and info.status == "SUCCEEDED", info
    assert info.start_time_ms and info.end_time_ms and info.metadata["owner"] == "test"
    assert "hello from the configmap" in await local_ray.job_logs("default", "c1", "hello-1")
    assert await local_ray.job_info("default", "c1", "no-such-job") is None
    await local_ray.submit_job("default", "c1", JobRequest("sleepy-1", "sleep 60"))
    await local_ray.delete_cluster("default", "c1")  # deleting the cluster stops its jobs
    for _ in range(40):
        info = await local_ray.job_info("default", "c1", "sleepy-1")
        if info is not None and info.is_terminal:
            break
        await asyncio.sleep(0.5)
    assert info is not None and info.status == "STOPPED"


def test_a_dedicated_head_advertises_the_declared_resources_on_loopback_ports(tmp_path: Path) -> None:
    from kuberay_provider.local.ray_backend import RayResources
    from kuberay_provider.local.ray_backend.ray_head import RayHead, ray_environment

    head = RayHead(tmp_path, tmp_path, RayResources(num_cpus=4, num_gpus=0.5, custom={"resource1": 2}), 60)
    command = head.command()
    assert {
        "--num-cpus=4",
        "--num-gpus=0.5",
        '--resources={"resource1": 2}',
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={head.ports.dashboard_agent}",
    } <= set(command)
    assert ray_environment(tmp_path)["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"  # keeps Ray on 127.0.0.1
