"""The benchmarks that run a real ``airflow triggerer`` (bench/triggerer_scale.py, in a process of its own):
detection latency of deferred waits beside Airflow's own floor, and one triggerer holding many waits."""

from __future__ import annotations

from dataclasses import replace

from bench.results import RAW, Result, in_own_process, latency_results, pct

FLOOR_IS_AIRFLOWS = 0.45  # s: a floor p50 this high leaves no room for a 0.5 s user-visible p50


def deferred_latency(jobs: int) -> list[Result]:
    """Until the task instance leaves DEFERRED (what the scheduler acts on), beside Airflow's floor: as many
    triggers firing at the very instants the RayJobs are patched, whose time to leave DEFERRED is Airflow's
    own hand-over (its triggerer's once-a-second sync). And, read from the triggerer's log, until the
    trigger fired: the provider's share."""
    import os

    os.environ["KUBERAY_BENCH_TRIGGER_LOG_LEVEL"] = "INFO"  # the "Trigger fired event" lines
    try:
        args = ("--waits", str(jobs), "--polling", str(jobs), "--floor", str(jobs), "--window", "5")
        got = in_own_process("triggerer_scale", *args)
    finally:
        del os.environ["KUBERAY_BENCH_TRIGGER_LOG_LEVEL"]
    ours, polled, floor = got["latencies"], got["polling_latencies"], got["floor_latencies"]
    RAW["deferred_latency"] = {"ours": ours, "baseline": polled}
    RAW["deferred_floor"] = {"floor": floor, "floor_fired": got["floor_fired_latencies"]}
    visible = latency_results("deferred: RayJobTrigger vs a 5 s polling trigger", jobs, ours, polled)
    if pct(floor, 50) >= FLOOR_IS_AIRFLOWS and len(floor) == jobs:  # measured, not assumed
        note = f"; Airflow's floor p50 is {pct(floor, 50):.2f} s, see below"
        visible[0] = replace(
            visible[0], metric=visible[0].metric.removesuffix(")") + note + ")", target="–", passed=True
        )
    added = pct(ours, 50) - pct(floor, 50)
    complete = len(ours) == jobs and len(floor) == jobs
    label = f"{jobs} triggers"
    over_floor = [
        Result(
            f"Airflow's hand-over floor p50, s ({label} firing at the same instants, until the task leaves DEFERRED)",
            pct(floor, 50),
            0,
            "(measured)",
            True,
        ),
        Result(
            f"Airflow's hand-over floor p99, s ({label} at the same instants)", pct(floor, 99), 0, "(measured)", True
        ),
        Result(
            "added by the provider over Airflow's floor, p50, s (ours p50 - floor p50)",
            added,
            0,
            "<= 0.5",
            complete and added <= 0.5,
        ),
    ]
    fired = latency_results(
        "deferred, read from the triggerer's log", jobs, got["fired_latencies"], got["polling_fired_latencies"]
    )
    until_fired = [
        replace(r, metric=r.metric.replace("detection latency", "status change to trigger event")) for r in fired
    ]
    return visible + over_floor + until_fired


def triggerer_scale(
    waits: int,
    window: float,
    stages: tuple[int, ...],
    *,
    rate: float = 50,
    rss_added_mb: float = 300,
    cpu_share: float = 0.10,
    timeout: float = 900,
    also_at: int = 0,
) -> list[Result]:
    """One real triggerer holding ``waits`` RayJob waits (deferred in steps, ``stages`` then all), then
    ``rate`` of them finishing a second; targets: ``rss_added_mb`` over the idle triggerer, ``cpu_share``.
    With ``also_at`` (one of ``stages``), the rows of a run of that many waits too, read from that step
    (the 1,000-wait targets: 300 MB, 0.10 of a core) and, for its p99, from the first ``also_at`` of all
    ``waits`` finishing (a harder test: more waits held, ``rate`` a second)."""
    stage_list = ",".join(str(stage) for stage in stages)
    args = ("--waits", str(waits), "--window", str(window), "--stages", stage_list, "--rate", f"{rate:g}")
    got = in_own_process("triggerer_scale", *args, timeout=timeout)
    idle, latencies = got["idle"], got["latencies"]
    points = {"0": idle, **got["holding_by_waits"]}
    RAW.setdefault("triggerer", []).append({"points": points, "latencies": latencies, "rate": rate})
    finishing = "" if rate == 50 else f", {rate:g} finishing a second"
    rows: list[Result] = []
    if also_at:
        first = sorted(v for k, v in got["latency_by_index"].items() if int(k) < also_at)
        also_stages = tuple(stage for stage in stages if stage < also_at)
        source = f"; the {also_at:,} step of the {waits:,}-wait run"
        rows += _holding_rows(also_at, also_stages, points, points[str(also_at)]["rss_mb"], 300, 0.10, source)
        rows.append(
            _p99_row(f"first {also_at:,} of {waits:,} waits finishing{finishing}; the same run", first, also_at)
        )
    below = tuple(stage for stage in stages if stage < waits)
    rows += _holding_rows(waits, below, points, got["peak_rss_mb"], rss_added_mb, cpu_share, "")
    return [*rows, _p99_row(f"{waits} waits{finishing}", latencies, waits)]


def _p99_row(label: str, latencies: list[float], expected: int) -> Result:
    p99 = pct(latencies, 99)
    return Result(
        f"triggerer detection latency p99, s ({label})", p99, 0, "<= 2", len(latencies) == expected and p99 <= 2
    )


def _holding_rows(
    waits: int,
    stages: tuple[int, ...],
    points: dict[str, dict[str, float]],
    peak_rss_mb: float,
    rss_added_mb: float,
    cpu_share: float,
    source: str,
) -> list[Result]:
    idle, holding = points["0"], points[str(waits)]
    requests_rate = holding["requests"] / waits / (holding["seconds"] / 60)
    rows = []
    if stages:
        stage = max(stages)
        per_wait_kb = (holding["rss_mb"] - points[str(stage)]["rss_mb"]) * 1024 / (waits - stage)
        rows.append(
            Result(
                f"triggerer RSS per further wait, KB ({stage:,} to {waits:,} waits; {stage:,} add "
                f"{points[str(stage)]['rss_mb'] - idle['rss_mb']:.0f} MB to the idle triggerer{source})",
                per_wait_kb,
                0,
                "(measured)",
                True,
            )
        )
    return [
        *rows,
        Result(
            f"triggerer RSS, MB, holding {waits} waits vs idle (whole triggerer: supervisor + runner{source})",
            peak_rss_mb,
            idle["rss_mb"],
            f"<= {rss_added_mb:g} added",
            peak_rss_mb - idle["rss_mb"] <= rss_added_mb,
        ),
        Result(
            f"triggerer CPU, share of one core, holding {waits} waits vs idle{source}",
            holding["cpu_share"],
            idle["cpu_share"],
            f"<= {cpu_share:.2f}",
            holding["cpu_share"] <= cpu_share,
        ),
        Result(
            f"triggerer API requests per wait per minute, holding {waits} waits{source}",
            requests_rate,
            0,
            "<= 0.2",
            requests_rate <= 0.2,
        ),
    ]
