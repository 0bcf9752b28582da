"""One local ``ray start --head``: its free ports, its environment, its command, and waiting for its dashboard."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from .base import BackendError, RayResources
from .processes import processes_of_session, terminate

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class HeadPorts:
    gcs: int = field(default_factory=free_port)
    dashboard: int = field(default_factory=free_port)
    client: int = field(default_factory=free_port)
    metrics: int = field(default_factory=free_port)
    serve: int = field(default_factory=free_port)
    # Ray's fixed default (52365) collides with any other Ray head on the machine; the job agent behind
    # it then never starts and every submission answers "No available agent to submit job".
    dashboard_agent: int = field(default_factory=free_port)

    def urls(self) -> dict[str, str]:
        """Port name (as KubeRay names the head Service's ports) -> base URL."""
        return {
            "dashboard": f"http://127.0.0.1:{self.dashboard}",
            "gcs-server": f"http://127.0.0.1:{self.gcs}",
            "client": f"http://127.0.0.1:{self.client}",
            "metrics": f"http://127.0.0.1:{self.metrics}",
            "serve": f"http://127.0.0.1:{self.serve}",
        }


def ray_environment(python_bin_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{python_bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray 2.5x turns token auth on when a token file exists; this head listens on 127.0.0.1 only and is
    # reached through the local API server's service proxy, whose clients carry no Ray token.
    env["RAY_AUTH_MODE"] = "disabled"
    # Without it `ray start --node-ip-address=127.0.0.1` swaps in the machine's routable address (so the
    # agents listen there): a single-node Ray keeps to the loopback, as on macOS and Windows.
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def _last_line(text: str) -> str:
    """The error itself: the last line of a traceback."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-500:] if lines else "no output"


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class RayHead:
    """One ``ray start --head`` on 127.0.0.1 with free ports and its own temp dir, owned by this process:
    ``stop()`` ends its processes only (never ``ray stop``, which would end every Ray of the machine)."""

    def __init__(
        self,
        temp_dir: Path,
        python_bin_dir: Path,
        resources: RayResources,
        start_timeout: float,
        *,
        remove_temp_dir: bool = False,
    ) -> None:
        self.temp_dir = temp_dir
        self.remove_temp_dir = remove_temp_dir
        self.python_bin_dir = python_bin_dir
        self.resources = resources
        self.start_timeout = start_timeout
        self.ports = HeadPorts()

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    def command(self) -> list[str]:
        ports = self.ports
        command = [
            str(self.python_bin_dir / "ray"),
            "start",
            "--head",
            "--node-ip-address=127.0.0.1",
            f"--port={ports.gcs}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={ports.dashboard}",
            "--include-dashboard=true",
            f"--ray-client-server-port={ports.client}",
            f"--metrics-export-port={ports.metrics}",
            f"--dashboard-agent-listen-port={ports.dashboard_agent}",
            f"--num-cpus={_format_number(self.resources.num_cpus)}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
        ]
        if self.resources.num_gpus:
            command.append(f"--num-gpus={_format_number(self.resources.num_gpus)}")
        if self.resources.custom:
            command.append(f"--resources={json.dumps(dict(self.resources.custom))}")
        return command

    def start(self) -> None:
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            self.command(),
            env=ray_environment(self.python_bin_dir),
            capture_output=True,
            text=True,
            timeout=self.start_timeout,
        )
        if result.returncode != 0:
            self.stop()
            log.warning("ray start failed (%s):\n%s", result.returncode, result.stderr[-4000:])
            raise BackendError(f"ray start failed ({result.returncode}): {_last_line(result.stderr)}")

    def stop(self) -> None:
        terminate(processes_of_session(self.temp_dir))
        if self.remove_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


async def wait_for_dashboard(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}/api/version", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                    if resp.status == 200:
                        return
            except (TimeoutError, aiohttp.ClientError):
                pass
            if time.monotonic() > deadline:
                raise BackendError(f"the Ray dashboard at {url} did not come up")
            await asyncio.sleep(0.5)


def describe_resources(resources: RayResources) -> str:
    parts = [f"CPU {_format_number(resources.num_cpus)}", f"GPU {_format_number(resources.num_gpus)}"]
    parts += [f"{name} {_format_number(amount)}" for name, amount in sorted(resources.custom.items())]
    return ", ".join(parts)
