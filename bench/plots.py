"""Charts of a benchmark run: ``python -m bench.plots [RESULTS_JSON] [OUT_DIR]``.

``bench/run`` writes the measurements behind its table to ``docs/images/bench/results.json`` and then draws
them here as PNGs beside it (shown in docs/benchmarks.md): detection latency CDFs (ours against polling,
for the synchronous, deferred and Prefect waits), the triggerer's RSS and CPU against the number of waits
it holds, backfill throughput against a bare create loop, and task start to RayJob created.

matplotlib is imported only here, and only when drawing: the benchmarks run without it (the charts are
then skipped, saying so).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = PROJECT_ROOT / "docs" / "images" / "bench"
RESULTS = OUT_DIR / "results.json"
OURS, BASELINE, THIRD, FLOOR = "#1565c0", "#9e9e9e", "#ef6c00", "#2e7d32"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _cdf(axis: Any, values: list[float], label: str, color: str) -> None:
    ordered = sorted(values)
    if ordered:
        fractions = [(index + 1) / len(ordered) for index in range(len(ordered))]
        axis.step(ordered, fractions, where="post", label=label, color=color)


def detection_latency(plt: Any, raw: dict[str, Any], out: Path) -> Path | None:
    panels = [
        ("synchronous wait (watch)", raw.get("sync_latency"), "5 s polling wait"),
        ("deferred (RayJobTrigger)", raw.get("deferred_latency"), "5 s polling trigger"),
        ("Prefect wait_for_rayjob", raw.get("prefect_latency"), "5 s polling task"),
    ]
    panels = [panel for panel in panels if panel[1]]
    if not panels:
        return None
    # One x range for all (log: ours in ms, polling in s), so the panels compare at a glance.
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, sharex=True)
    for axis, (title, data, baseline_label) in zip(axes[0], panels, strict=True):
        _cdf(axis, [max(v, 1e-4) for v in data["ours"]], "ours", OURS)
        _cdf(axis, [max(v, 1e-4) for v in data["baseline"]], baseline_label, BASELINE)
        if data is raw.get("deferred_latency") and raw.get("deferred_floor"):  # Airflow's own hand-over
            _cdf(axis, [max(v, 1e-4) for v in raw["deferred_floor"]["floor"]], "Airflow's floor", FLOOR)
        axis.set_xscale("log")
        axis.set_xlim(1e-4, 10)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("status change to wait returned, s (log)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("fraction of waits")
    return _save(plt, figure, out / "detection_latency.png")


def triggerer(plt: Any, raw: dict[str, Any], out: Path) -> Path | None:
    # One line per triggerer run (1,000 waits; 10,000 in a full run): each has its own idle point.
    runs = [sorted((int(waits), stats) for waits, stats in run["points"].items()) for run in raw.get("triggerer", [])]
    runs = [points for points in runs if points]
    if not runs:
        return None
    figure, (memory, cpu) = plt.subplots(1, 2, figsize=(9, 3.4))
    for points in runs:
        waits = [count for count, _ in points]
        label = f"run up to {waits[-1]:,} waits"
        memory.plot(waits, [stats["rss_mb"] for _, stats in points], marker="o", label=label)
        cpu.plot(waits, [100 * stats["cpu_share"] for _, stats in points], marker="o", label=label)
    memory.set_xlabel("deferred RayJob waits held")
    memory.set_ylabel("triggerer RSS, MB (supervisor + runner)")
    cpu.set_xlabel("deferred RayJob waits held")
    cpu.set_ylabel("CPU, % of one core")
    for axis in (memory, cpu):
        axis.set_xscale("symlog", linthresh=100)
        axis.grid(alpha=0.3)
        axis.set_ylim(bottom=0)
        axis.legend(fontsize=8)
    figure.suptitle("One airflow triggerer, idle (0) and holding N waits", fontsize=10)
    return _save(plt, figure, out / "triggerer.png")


def backfill(plt: Any, raw: dict[str, Any], out: Path) -> Path | None:
    data = raw.get("backfill")
    if not data:
        return None
    rate = data["rate"]
    labels = ["bare create loop", "provider path", "provider path,\nserver_dry_run=True"]
    values = [rate["bare"], rate["ours"], rate["dry"]]
    figure, axis = plt.subplots(figsize=(6, 3.4))
    bars = axis.bar(labels, values, color=[BASELINE, OURS, THIRD])
    for bar, value in zip(bars, values, strict=True):
        axis.annotate(
            f"{value:.0f}/s ({value / rate['bare']:.2f}x)",
            (bar.get_x() + bar.get_width() / 2, value),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axis.set_ylabel("RayJobs created per second")
    axis.set_ylim(0, max(values) * 1.15)
    axis.set_title(f"Backfill: {data['count']} RayJobs from one process", fontsize=10)
    axis.grid(axis="y", alpha=0.3)
    return _save(plt, figure, out / "backfill.png")


def task_start(plt: Any, raw: dict[str, Any], out: Path) -> Path | None:
    data = raw.get("task_start")
    if not data:
        return None
    figure, axis = plt.subplots(figsize=(6, 3.4))
    _cdf(axis, data["latencies"], "RayJobOperator.execute()", OURS)
    _cdf(axis, data["dry_run_latencies"], "the same, server_dry_run=True", THIRD)
    _cdf(axis, data["bare_latencies"], "bare create from the same process", BASELINE)
    axis.set_xscale("log")
    axis.set_xlabel("task start to RayJob created, s (log)")
    axis.set_ylabel("fraction of tasks")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="center")
    return _save(plt, figure, out / "task_start.png")


def _save(plt: Any, figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def draw(raw: dict[str, Any], out: Path = OUT_DIR) -> list[Path]:
    """Every chart the measurements allow; raises ImportError when matplotlib is missing."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    charts = (detection_latency, triggerer, backfill, task_start)
    return [path for chart in charts if (path := chart(plt, raw, out)) is not None]


def save_and_draw(raw: dict[str, Any], out: Path = OUT_DIR) -> None:
    """Write the measurements, then the charts (skipped, saying why, without matplotlib)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS.name).write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
    try:
        drawn = draw(raw, out)
    except ImportError:
        print(f"charts skipped: matplotlib is not installed (measurements in {out / RESULTS.name})")
        return
    print(f"charts in {out}: " + ", ".join(path.name for path in drawn))


def main(argv: list[str]) -> int:
    results = Path(argv[0]) if argv else RESULTS
    out = Path(argv[1]) if len(argv) > 1 else results.parent
    for path in draw(json.loads(results.read_text()), out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
