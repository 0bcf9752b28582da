"""``kuberay-provider local ARGS`` in a subprocess, with its home (state, kubeconfig, token, TLS) and HOME
of its own, as a user on a fresh machine runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_local_cli(local_home: Path, home: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBERAY_PROVIDER_LOCAL_HOME": str(local_home), "HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "kuberay_provider.cli", "local", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
