"""A real ``prefect worker start --type kuberay`` process and the Prefect CLI, for the worker's end-to-end test.

Prefect finds the ``kuberay`` worker type through the ``prefect.collections`` entry point of the installed
package, as a user's ``pip install`` gives it: the test proves that entry point (``.ci/dev`` reinstalls the
package whenever pyproject.toml changes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PREFECT = str(Path(sys.executable).parent / "prefect")


def prefect_env(api_url: str, kubeconfig: Path, **settings: str) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api_url, "KUBECONFIG": str(kubeconfig), **settings}


def prefect_cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PREFECT, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


class WorkerProcess:
    """``prefect worker start`` in the background, its output in a file (shown when a test fails)."""

    def __init__(self, env: dict[str, str], output: Path, *args: str) -> None:
        self.env, self.output, self.args = env, output, args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.output.open("wb") as sink:
            self.process = subprocess.Popen(
                [PREFECT, "worker", "start", *self.args],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def log(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)  # as ^C: the worker shuts down, leaving its flow runs' RayJobs alone
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: only the worker and its children
            self.process.wait(30)
