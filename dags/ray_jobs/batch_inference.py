"""Score one date partition with Ray Data: the Ray job behind the example batch-inference DAG.

    python batch_inference.py --date 2026-11-24 --data-root /tmp/kuberay-example

Reads ``<root>/input/date=<date>/`` (made here, deterministically, when absent, so the example needs no
data set), trains a small logistic-regression model in the job (no download), scores every row with
``map_batches`` and writes ``<root>/output/date=<date>/`` — replacing that partition if it exists, so
re-running a date never duplicates rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import ray

FEATURES = ["tenure_months", "monthly_spend", "support_tickets"]


def make_input_partition(path: Path, date: str, rows: int = 2_000) -> None:
    """Synthetic customers for one day; the seed is the date, so a day's input never changes."""
    rng = np.random.default_rng(int(date.replace("-", "")))
    frame = pd.DataFrame(
        {
            "customer_id": np.arange(rows),
            "tenure_months": rng.integers(1, 72, rows),
            "monthly_spend": rng.gamma(2.0, 30.0, rows).round(2),
            "support_tickets": rng.poisson(1.5, rows),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part-0.parquet", index=False)


def train_churn_model(seed: int = 7) -> dict[str, list[float] | float]:
    """Logistic regression by gradient descent on labelled synthetic history: small, real, offline."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.integers(1, 72, 5_000), rng.gamma(2.0, 30.0, 5_000), rng.poisson(1.5, 5_000)]).astype(
        float
    )
    true_logit = -0.04 * x[:, 0] + 0.01 * x[:, 1] + 0.6 * x[:, 2] - 1.0
    y = (rng.random(5_000) < 1 / (1 + np.exp(-true_logit))).astype(float)
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    weights, bias = np.zeros(z.shape[1]), 0.0
    for _ in range(500):
        p = 1 / (1 + np.exp(-(z @ weights + bias)))
        weights -= 0.5 * z.T @ (p - y) / len(y)
        bias -= 0.5 * float(np.mean(p - y))
    return {"weights": weights.tolist(), "bias": bias, "mean": mean.tolist(), "std": std.tolist()}


class ChurnScorer:
    """Holds the model once per Ray worker; map_batches calls it on pandas batches."""

    def __init__(self, model: dict) -> None:
        self.weights = np.asarray(model["weights"])
        self.bias = float(model["bias"])
        self.mean = np.asarray(model["mean"])
        self.std = np.asarray(model["std"])

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        z = (batch[FEATURES].to_numpy(dtype=float) - self.mean) / self.std
        batch["churn_probability"] = 1 / (1 + np.exp(-(z @ self.weights + self.bias)))
        return batch[["customer_id", "churn_probability"]]


def score_partition(data_root: Path, date: str) -> dict:
    input_dir = data_root / "input" / f"date={date}"
    output_dir = data_root / "output" / f"date={date}"
    if not input_dir.exists():
        make_input_partition(input_dir, date)
    model = train_churn_model()
    scored = ray.data.read_parquet(str(input_dir)).map_batches(
        ChurnScorer, fn_constructor_args=(model,), batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=1)
    )
    staging = output_dir.with_name(output_dir.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    scored.write_parquet(str(staging))
    # Swap the finished partition in whole, so a re-run replaces the day's output instead of adding to it.
    shutil.rmtree(output_dir, ignore_errors=True)
    staging.rename(output_dir)
    frame = pd.read_parquet(output_dir)
    summary = {
        "date": date,
        "rows": len(frame),
        "mean_churn_probability": round(float(frame["churn_probability"].mean()), 4),
        "output": str(output_dir),
    }
    (output_dir / "_SUMMARY.json").write_text(json.dumps(summary))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="the logical date, YYYY-MM-DD")
    parser.add_argument("--data-root", required=True, type=Path)
    args = parser.parse_args()
    ray.init()
    summary = score_partition(args.data_root, args.date)
    print(f"scored {summary['rows']} rows for {summary['date']}: mean churn {summary['mean_churn_probability']}")
    print(f"output written to {summary['output']}")
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
