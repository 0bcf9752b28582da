"""bench.plots: the charts of a benchmark run, drawn from its measurements; without matplotlib, skipped."""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from bench import plots

RAW: dict[str, Any] = {
    "sync_latency": {"ours": [0.001, 0.002, 0.003], "baseline": [1.0, 2.5, 5.0]},
    "deferred_latency": {"ours": [0.5, 0.6, 1.0], "baseline": [3.0, 3.5, 4.0]},
    "deferred_floor": {"floor": [0.45, 0.5, 0.9], "floor_fired": [0.001, 0.002, 0.001]},
    "prefect_latency": {"ours": [0.08, 0.1], "baseline": [3.1, 3.4]},
    "triggerer": [
        {
            "points": {
                "0": {"rss_mb": 298.0, "cpu_share": 0.012},
                "100": {"rss_mb": 427.0, "cpu_share": 0.014},
                "1000": {"rss_mb": 468.0, "cpu_share": 0.017},
            }
        }
    ],
    "backfill": {"rate": {"ours": 500.0, "dry": 300.0, "bare": 600.0}, "count": 200},
    "task_start": {"latencies": [0.05, 0.06], "dry_run_latencies": [0.07, 0.08], "bare_latencies": [0.01, 0.02]},
}


def test_without_matplotlib_the_measurements_are_written_and_the_charts_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    plots.save_and_draw(RAW, tmp_path)

    assert json.loads((tmp_path / "results.json").read_text()) == RAW
    assert "charts skipped: matplotlib is not installed" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))


def test_every_chart_is_drawn_from_a_run(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")

    drawn = plots.draw(RAW, tmp_path)

    assert sorted(path.name for path in drawn) == [
        "backfill.png",
        "detection_latency.png",
        "task_start.png",
        "triggerer.png",
    ]
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in drawn)


def test_a_partial_run_draws_only_what_it_measured(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")

    assert [path.name for path in plots.draw({"backfill": RAW["backfill"]}, tmp_path)] == ["backfill.png"]
