"""Detection latency of the Prefect wait: ``python -m bench.prefect_latency --jobs 50`` prints one JSON line.

One flow run waits on ``jobs`` RayJobs with the integration's ``wait_for_rayjob`` task (a watch) and on
as many with a task that reads its RayJob every 5 s (the baseline), all at once; a thread turns the
RayJobs Complete through ``/status``, the two kinds interleaved, and the latency of each is from its
patch to its task's future resolving in the flow (the task run finished and its result returned).
Run in a process of its own: Prefect starts a temporary API server for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.triggerer_scale import NAMESPACE, PATCHES_PER_SECOND, create_rayjobs, rayjob_name
from kuberay_provider.local.plane import LocalControlPlane

POLL_INTERVAL_SECONDS = 5.0


def run(jobs: int) -> dict[str, Any]:
    from kubernetes import client
    from prefect import flow, task
    from prefect.futures import as_completed
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    from kuberay_provider.core.kube.sync_client import RayObjectsClient
    from kuberay_provider.core.resources import RAYJOB
    from kuberay_provider.core.status import RayJobState
    from kuberay_provider.prefect import RayJob, wait_for_rayjob

    crds = (
        Path(os.environ.get("KUBERAY_SHARED_DIR", Path(__file__).resolve().parent.parent.parent / "shared" / "kuberay"))
        / "crds"
    )
    with LocalControlPlane(crds_dir=crds, controller=False) as plane:
        create_rayjobs(plane, 2 * jobs)
        block = RayJob(
            entrypoint="python -c 'print(1)'",
            stream_logs=False,
            validate_schema=False,
            credentials=KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(plane.kubeconfig_path)),
        )

        @task(name="poll_rayjob_every_5s")
        def poll_wait(name: str) -> str:
            with plane.api_client() as api_client:
                kube = RayObjectsClient(api_client)
                while not RayJobState.from_object(kube.get(RAYJOB, NAMESPACE, name)).is_terminal:
                    time.sleep(POLL_INTERVAL_SECONDS)
            return name

        patched: dict[str, float] = {}

        def drive() -> None:
            with plane.api_client() as api_client:
                custom = client.CustomObjectsApi(api_client)
                for index in range(2 * jobs):
                    custom.patch_namespaced_custom_object_status(
                        "ray.io",
                        "v1",
                        NAMESPACE,
                        "rayjobs",
                        rayjob_name(index),
                        {"status": {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}},
                    )
                    patched[rayjob_name(index)] = time.monotonic()
                    time.sleep(1 / PATCHES_PER_SECOND)

        @flow(name="bench-prefect-latency", task_runner=ThreadPoolTaskRunner(max_workers=2 * jobs))
        def latency_flow() -> dict[str, float]:
            futures = {}
            for index in range(2 * jobs):
                name = rayjob_name(index)
                future = (
                    poll_wait.submit(name)
                    if index % 2
                    else wait_for_rayjob.submit(block, {"name": name, "namespace": NAMESPACE})
                )
                futures[future] = name
            time.sleep(15)  # every task run has started waiting
            driver = threading.Thread(target=drive, daemon=True)
            driver.start()
            resolved = {}
            for future in as_completed(list(futures), timeout=120):
                future.result()
                resolved[futures[future]] = time.monotonic()
            driver.join(5)
            return resolved

        resolved = latency_flow()
    names = [rayjob_name(index) for index in range(2 * jobs)]
    latency = {name: resolved[name] - patched[name] for name in names if name in resolved and name in patched}
    return {
        "jobs": jobs,
        "latencies": sorted(latency[n] for i, n in enumerate(names) if i % 2 == 0 and n in latency),
        "polling_latencies": sorted(latency[n] for i, n in enumerate(names) if i % 2 == 1 and n in latency),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args(argv)
    result = run(args.jobs)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
