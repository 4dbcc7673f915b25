"""tasks/publish.py: a run's plots, tables, clips and metrics.json reach W&B and TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import compose_cfg, read_wandb_run
from omegaconf import DictConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tasks.core import run_task, update_metrics_json
from tasks.publish import WandbTarget, publish_folder, run_outputs

WITHOUT_LIGHTNING = ["~datamodule", "~model", "~trainer", "~callbacks"]


def save_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 8), (200, 30, 30)).save(path)
    return path


def save_gif(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("RGB", (12, 8), (20 * i, 30, 30)) for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=200, loop=0)
    return path


def study_task(cfg: DictConfig) -> float:
    """A task that writes what a study run writes: a plot, a table, a clip, metrics, a
    checkpoint."""
    run = Path(cfg.paths.output_dir)
    save_png(run / "he" / "gate_map.png")
    save_gif(run / "generator" / "samples.gif")
    save_png(run / "checkpoints" / "not_a_result.png")
    pd.DataFrame({"stage": ["baseline", "poly"], "acc": [0.5, 0.75]}).to_csv(
        run / "stages.csv", index=False
    )
    update_metrics_json(run, {"bench/speedup": 2.5, "poly/test_acc": 0.75})
    return 2.5


def study_cfg(logger: str, run: Path) -> DictConfig:
    return compose_cfg(
        [
            *WITHOUT_LIGHTNING,
            f"logger={logger}",
            f"task._target_={__name__}.study_task",
            "task_name=publish_study",
            "tags=[study,published]",
            f"paths.output_dir={run}",
        ]
    )


def test_run_outputs_leave_out_checkpoints_and_logger_files(tmp_path: Path) -> None:
    for name in ("a.png", "he/b.png", "checkpoints/c.png", "wandb/run/files/media/d.png"):
        save_png(tmp_path / name)
    for name in ("t.csv", "csv/metrics.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("a,b\n1,2\n")
    save_gif(tmp_path / "gen" / "samples.gif")
    save_gif(tmp_path / "checkpoints" / "old.gif")
    found = [p.relative_to(tmp_path).as_posix() for p in run_outputs(tmp_path)]
    assert found == ["a.png", "gen/samples.gif", "he/b.png", "t.csv"]


def test_run_task_publishes_to_wandb_and_tensorboard(tmp_path: Path) -> None:
    assert run_task(study_cfg("many", tmp_path)) == 2.5
    seen = read_wandb_run(tmp_path)
    assert seen["summary"]["bench/speedup"] == 2.5
    assert seen["summary"]["poly/test_acc"] == 0.75
    assert seen["summary"]["images/he/gate_map"]["_type"] == "image-file"
    assert seen["summary"]["tables/stages"]["_type"] == "table-file"
    assert seen["summary"]["videos/generator/samples"]["_type"] == "video-file"
    assert any(f.startswith("media/images/images/he/gate_map") for f in seen["files"])
    assert not any("not_a_result" in f for f in seen["files"])
    assert {"study", "published"} <= set(seen["tags"])
    assert seen["config"]["task_name"] == "publish_study"
    board = EventAccumulator(str(tmp_path / "tensorboard"))
    board.Reload()
    assert board.Tags()["images"] == ["he/gate_map"]


def test_csv_logger_alone_receives_nothing(tmp_path: Path) -> None:
    run_task(study_cfg("csv", tmp_path))
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "tensorboard").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["bench/speedup"] == 2.5


def test_publish_folder_names_the_run_after_the_folder_config(tmp_path: Path) -> None:
    plot = save_png(tmp_path / "plots" / "frontier.png")
    config = {"task_name": "lingcn_ntu", "tags": ["sweep"], "logger": {"wandb": {"project": "p"}}}
    target = WandbTarget.for_folder(config, job_type="report", offline=True)
    assert (target.project, target.name, target.group, target.tags) == (
        "p",
        "lingcn_ntu",
        "lingcn_ntu",
        ("sweep",),
    )
    published = publish_folder(tmp_path, [plot], target, config)
    assert published.parent == tmp_path / "wandb"
    seen = read_wandb_run(tmp_path)
    assert seen["summary"]["images/plots/frontier"]["_type"] == "image-file"
    assert seen["tags"] == ["sweep"]
