"""The user documentation builds without a warning (mkdocs --strict): no broken link, no orphan page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def test_docs_build_strict(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "docs/mkdocs.yml", "-d", str(tmp_path / "site")],
        capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT,  # mkdocs resolves docs_dir "." from here
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "local-control-plane" / "index.html").exists()
