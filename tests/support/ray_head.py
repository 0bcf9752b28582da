"""One real local Ray head for the whole test session (``ray start`` costs 10-25 s here)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RayHead:
    address: str
    dashboard_url: str
    temp_dir: Path
    process: subprocess.Popen

    def stop(self) -> None:
        # `ray start --block` tears down everything it started when signalled; `ray stop` would also
        # kill Ray processes this session does not own.
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def start_ray_head(num_cpus: int = 4, timeout: float = 120.0) -> RayHead:
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0")
    temp_dir = Path(tempfile.mkdtemp(prefix="kr-ray-", dir="/tmp"))
    gcs_port, dashboard_port = free_port(), free_port()
    ports = {
        "--port": gcs_port,
        "--dashboard-port": dashboard_port,
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    command = [
        f"{bin_dir}/ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1", "--include-dashboard=true", f"--num-cpus={num_cpus}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    log = open(temp_dir / "ray-start.log", "wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    head = RayHead(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dashboard_port}", temp_dir, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited {process.returncode}: {(temp_dir / 'ray-start.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{head.dashboard_url}/api/version", timeout=2):
                return head
        except OSError:
            time.sleep(0.5)
    head.stop()
    raise RuntimeError(f"Ray dashboard did not answer within {timeout:.0f} s")
