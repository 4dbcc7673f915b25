"""DeeDiff's threshold-sweep report from one run or a multirun of a deediff experiment.

    python run.py experiment=deediff_mnist                          # sweep inside one run
    python run.py -m experiment=deediff_mnist reuse_from=<run> stages=[evaluate] \\
        'pipeline.evaluate.thresholds=[0.05],[0.1],[0.2]'          # or one job per threshold
    python scripts/deediff_report.py <run or multirun folder>

Reads every ``evaluate/sweep.json`` under the folder and writes into it ``deediff_sweep.png``
(FID against the fraction of layers executed and against sampling wall time: DeeDiff per
threshold, the static-exit baseline at the same cost, the full model), ``deediff_sweep.csv``
and a Markdown table on stdout. Every FID is labelled by its feature space (``fid_classifier``:
effml's classifier; ``fid_inception``: Inception-v3). The exit-layer-per-step plots and the
sample grids are in each run's ``evaluate/`` folder; ``--wandb`` publishes them with the table
and the sweep plot into a W&B run in the folder (offline unless ``--wandb online``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tasks.deediff_plots import plot_sweep
from tasks.publish import WandbTarget, add_wandb_flag, publish_folder
from tasks.run_folders import folder_config


def collect(folder: Path) -> tuple[pd.DataFrame, list[list[float]]]:
    """All rows of the sweep files under ``folder`` (one full-model row), and the Spearman
    lists."""
    files = sorted(folder.rglob("evaluate/sweep.json"))
    if not files:
        raise SystemExit(
            f"{folder}: no evaluate/sweep.json; give the folder of a deediff_* run or multirun"
        )
    rows, rhos, full_seen = [], [], set()
    for path in files:
        data = json.loads(path.read_text())
        rhos.append(data["spearman"])
        for row in data["rows"]:
            if row["kind"] in ("full", "real"):
                if row["kind"] in full_seen:
                    continue
                full_seen.add(row["kind"])
            rows.append({**row, "source": str(path.parent.relative_to(folder))})
    return pd.DataFrame(rows), rhos


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table, numbers to four significant digits, blanks for missing values."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a deediff run or multirun folder")
    add_wandb_flag(parser, "the table, the sweep plot and the sample grids into a W&B run")
    args = parser.parse_args(argv)
    table, rhos = collect(args.folder)
    fid_keys = [c for c in table.columns if c.startswith("fid_")]
    plot_sweep(table.to_dict("records"), args.folder / "deediff_sweep.png", fid_keys[0])
    table.to_csv(args.folder / "deediff_sweep.csv", index=False)
    full = table[table.kind == "full"].iloc[0]
    table["layers_saved"] = 1 - table.layer_fraction
    table["wall_saving"] = 1 - table.wall_s / full.wall_s
    for key in fid_keys:
        table[f"{key}_vs_full"] = (table[key] / full[key] - 1).where(table.kind != "real")
    cols = ["kind", "rule", "threshold", "shallow_depth", "shallow_steps", "layer_fraction"]
    cols += ["layers_saved", "wall_s", "wall_saving", *fid_keys]
    cols += [f"{k}_vs_full" for k in fid_keys]
    cols += ["is_classifier", "precision_classifier", "recall_classifier"]
    print(markdown(table[[c for c in cols if c in table.columns]]))
    for rho in rhos:
        print("Spearman(u_i, true error_i) per block:", ", ".join(f"{r:.3f}" for r in rho))
        print(f"mean {sum(rho) / len(rho):.3f}")
    print(f"wrote {args.folder / 'deediff_sweep.png'} and {args.folder / 'deediff_sweep.csv'}")
    if args.wandb:
        written = [args.folder / "deediff_sweep.png", args.folder / "deediff_sweep.csv"]
        written += sorted(args.folder.rglob("evaluate/*.png"))
        config = folder_config(args.folder)
        target = WandbTarget.for_folder(config, job_type="report", offline=args.wandb != "online")
        print(f"published to W&B: {publish_folder(args.folder, written, target, config)}")


if __name__ == "__main__":
    main()
