"""What every benchmark returns: table rows against a baseline measured in the same run, and the raw
measurements behind them (for the charts, bench/plots.py); and running a benchmark in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RAW: dict[str, Any] = {}  # the measurements behind the table, for the charts (bench.plots)


@dataclass(frozen=True)
class Result:
    metric: str
    ours: float
    baseline: float
    target: str
    passed: bool

    @property
    def ratio(self) -> str:
        return f"{self.ours / self.baseline:.2f}" if self.baseline else "-"


def pct(values: list[float], percentile: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(percentile / 100 * (len(values) - 1)))]


def latency_results(label: str, jobs: int, ours: list[float], baseline: list[float]) -> list[Result]:
    complete = len(ours) == jobs and len(baseline) == jobs
    return [
        Result(
            f"detection latency p50, s ({jobs} jobs, {label})",
            pct(ours, 50),
            pct(baseline, 50),
            "<= 0.5",
            complete and pct(ours, 50) <= 0.5,
        ),
        Result(
            f"detection latency p99, s ({jobs} jobs, {label})",
            pct(ours, 99),
            pct(baseline, 99),
            "<= 2",
            complete and pct(ours, 99) <= 2,
        ),
    ]


def in_own_process(module: str, *args: str, timeout: float = 900) -> dict:
    """Run ``python -m bench.<module> ARGS`` and read the JSON its last line carries."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        raise RuntimeError(
            f"bench.{module} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def print_table(results: list[Result]) -> None:
    print(f"{'metric':<96} {'ours':>9} {'baseline':>9} {'ratio':>7}  {'target':<24} result")
    for r in results:
        print(
            f"{r.metric:<96} {r.ours:>9.3f} {r.baseline:>9.3f} {r.ratio:>7}  {r.target:<24} {'pass' if r.passed else 'FAIL'}"
        )
