"""LinGCN's accuracy–latency frontier from a μ sweep.

    python run.py -m experiment=lingcn_ntu datamodule=ntu_synthetic \\
        pipeline.linearize.model.mu=0.5,1,2,4
    python scripts/lingcn_frontier.py outputs/lingcn_ntu/multiruns/<time>

Reads every job's metrics.json and .hydra/config.yaml; plots test accuracy of the poly stage
against encrypted latency per sample (one point per μ) with the CryptoGCN-style baseline
circuits, and writes frontier.png and frontier.csv into the multirun folder. A sweep that
reused one run's shared stages and skipped the baseline circuit (``reuse_from=<run>
pipeline.he.baseline=false``) takes the baseline point from that run: ``--baseline-run <run>``.
``--wandb`` publishes the table and the plot into a W&B run in the multirun folder (offline
unless ``--wandb online``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tasks.publish import WandbTarget, add_wandb_flag, publish_folder
from tasks.run_folders import folder_config, job_dirs, read_metrics, read_yaml


def collect(sweep: Path) -> pd.DataFrame:
    """One row per finished job: μ, kept gates, accuracies, latencies, levels."""
    rows = []
    for job in job_dirs(sweep):
        m = read_metrics(job)
        if m is None:
            continue
        cfg = read_yaml(job / ".hydra" / "config.yaml")
        rows.append(
            {
                "job": int(job.name),
                "mu": cfg["pipeline"]["linearize"]["model"]["mu"],
                "gates_kept": m.get("linearize/test_gates_kept"),
                "poly_test_acc": m.get("poly/test_acc"),
                "he_latency_s": m.get("he/latency_s_per_sample"),
                "he_cpu_s": m.get("he/cpu_s_per_sample"),
                "he_levels": m.get("he/levels"),
                "baseline_test_acc": m.get("cryptogcn/test_acc"),
                "baseline_latency_s": m.get("he_baseline/latency_s_per_sample"),
                "baseline_cpu_s": m.get("he_baseline/cpu_s_per_sample"),
                "baseline_levels": m.get("he_baseline/levels"),
            }
        )
    if not rows:
        raise SystemExit(
            f"{sweep}: no job folder with metrics.json; expected a multirun of "
            "experiment=lingcn_ntu"
        )
    return pd.DataFrame(rows).sort_values("mu")


def baseline_point(run: Path) -> dict[str, float]:
    """The CryptoGCN-style baseline of one full run: its accuracy, latency and levels."""
    path = run / "metrics.json"
    m = read_metrics(run) or {}
    keys = ("cryptogcn/test_acc", "he_baseline/latency_s_per_sample", "he_baseline/levels")
    if any(k not in m for k in keys):
        raise SystemExit(
            f"--baseline-run {run}: {path} lacks {list(keys)}; give a run that "
            "finished the cryptogcn and he stages with pipeline.he.baseline=true"
        )
    return {
        "baseline_test_acc": m[keys[0]],
        "baseline_latency_s": m[keys[1]],
        "baseline_cpu_s": m.get("he_baseline/cpu_s_per_sample"),
        "baseline_levels": m[keys[2]],
    }


def time_columns(table: pd.DataFrame) -> tuple[str, str, str]:
    """CPU time of the evaluating thread when every point has it (comparable across a busy
    machine's jobs), else wall latency: (LinGCN column, baseline column, axis label)."""
    cpu = ["he_cpu_s", "baseline_cpu_s"]
    if all(c in table and table[c].notna().all() for c in cpu):
        return "he_cpu_s", "baseline_cpu_s", "CKKS evaluation CPU time per sample (s, log)"
    return "he_latency_s", "baseline_latency_s", "CKKS latency per sample (s, log)"


def plot(table: pd.DataFrame, path: Path) -> None:
    """Accuracy against latency: LinGCN per μ, the baseline circuit per job."""
    fig = Figure(figsize=(6.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    lin, base_col, label = time_columns(table)
    done = table.dropna(subset=[lin, "poly_test_acc"]).sort_values(lin)
    ax.plot(done[lin], done["poly_test_acc"], "o-", label="LinGCN (μ sweep)")
    for _, row in done.iterrows():
        ax.annotate(
            f"μ={row['mu']:g}, {int(row['gates_kept'])} gates, {int(row['he_levels'])} lv",
            (row[lin], row["poly_test_acc"]),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=7,
        )
    base = table.dropna(subset=[base_col, "baseline_test_acc"])
    if len(base):
        ax.scatter(
            base[base_col],
            base["baseline_test_acc"],
            marker="s",
            color="tab:red",
            label="CryptoGCN-style baseline",
        )
    ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    """Write frontier.csv and frontier.png into the sweep folder; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="outputs/lingcn_ntu/multiruns/<time>")
    parser.add_argument(
        "--baseline-run",
        type=Path,
        default=None,
        help="a full run whose baseline circuit fills jobs that skipped it",
    )
    add_wandb_flag(parser, "the table and the plot into a W&B run in SWEEP")
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        print(f"{args.sweep}: not a folder", file=sys.stderr)
        return 2
    table = collect(args.sweep)
    if args.baseline_run is not None:
        for key, value in baseline_point(args.baseline_run).items():
            table[key] = table[key].fillna(value) if key in table else value
    written = [args.sweep / "frontier.csv", args.sweep / "frontier.png"]
    table.to_csv(written[0], index=False)
    plot(table, written[1])
    print(table.to_string(index=False))
    print(f"wrote {written[0]} and {written[1]}")
    if args.wandb:
        config = folder_config(args.sweep)
        target = WandbTarget.for_folder(config, job_type="report", offline=args.wandb != "online")
        print(f"published to W&B: {publish_folder(args.sweep, written, target, config)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
