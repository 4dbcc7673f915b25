"""The staged pipeline: LinGCN with tiny synthetic skeletons (stages, hand-over, resume), and
two stages that train different model classes on different data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import assert_ok, run_cli, run_folder
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tasks.core import run_task
from tasks.pipeline import StageContext

TINY = [
    "experiment=lingcn_ntu",
    "datamodule=ntu_synthetic",
    "trainer=cpu",
    "datamodule.num_classes=4",
    "datamodule.samples_per_class_per_view=6",
    "datamodule.num_frames=16",
    "datamodule.batch_size=16",
    "lingcn_sizes.ntu_synthetic.channels=[[3,4,1],[4,8,2],[8,8,1]]",
    "lingcn_sizes.ntu_synthetic.epochs.baseline=2",
    "lingcn_sizes.ntu_synthetic.epochs.linearize=2",
    "lingcn_sizes.ntu_synthetic.epochs.poly=1",
    "lingcn_sizes.ntu_synthetic.epochs.cryptogcn=1",
]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    logs, cache = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("cache")
    proc = run_cli(
        [*TINY, "pipeline.he.num_samples=3", "pipeline.he.baseline_samples=1"], logs, cache
    )
    assert_ok(proc)
    return run_folder(proc), logs, cache


@pytest.mark.slow
def test_stages_hand_over_checkpoints(pipeline_run: tuple[Path, Path, Path]) -> None:
    run, _, _ = pipeline_run
    metrics = json.loads((run / "metrics.json").read_text())
    for stage in ("baseline", "linearize", "poly", "cryptogcn"):
        record = json.loads((run / stage / "stage.json").read_text())
        assert Path(record["best_ckpt"]).is_file()
        assert str(run / stage) in record["best_ckpt"]
        assert f"{stage}/test_acc" in metrics
    assert metrics["baseline/test_gates_kept"] == 3 * 2 * 25
    # the poly stage freezes the linearize stage's gates
    assert metrics["poly/test_gates_kept"] == metrics["linearize/test_gates_kept"]


@pytest.mark.slow
def test_encrypted_inference_matches_plaintext(pipeline_run: tuple[Path, Path, Path]) -> None:
    run, _, _ = pipeline_run
    metrics = json.loads((run / "metrics.json").read_text())
    for prefix in ("he", "he_baseline"):
        assert metrics[f"{prefix}/agreement"] == 1.0
        assert metrics[f"{prefix}/max_abs_logit_err"] <= 1e-3
        assert metrics[f"{prefix}/latency_s_per_sample"] > 0
        assert metrics[f"{prefix}/ops/ct_ct_mul"] > 0
    # removed nonlinearities never cost levels: the linearized circuit is no deeper
    assert metrics["he/levels"] <= metrics["he_baseline/levels"]
    for name in ("gate_map.png", "accuracy_latency.png", "he_report.json"):
        assert (run / "he" / name).stat().st_size > 0


@pytest.mark.slow
def test_finished_stages_are_skipped_on_rerun(pipeline_run: tuple[Path, Path, Path]) -> None:
    run, logs, cache = pipeline_run
    before = {p: p.stat().st_mtime_ns for p in run.glob("*/checkpoints/*.ckpt")}
    proc = run_cli([*TINY, "stages=[baseline,linearize,poly]", f"hydra.run.dir={run}"], logs, cache)
    assert_ok(proc)
    out = proc.stdout + proc.stderr
    assert out.count("finished earlier") == 3
    assert {p: p.stat().st_mtime_ns for p in run.glob("*/checkpoints/*.ckpt")} == before


def test_stage_needing_a_missing_stage_fails_early(tmp_path: Path) -> None:
    proc = run_cli([*TINY, "stages=[poly]"], tmp_path, tmp_path / "cache")
    assert proc.returncode != 0
    assert "needs the finished stage" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_reuse_from_takes_finished_stages_of_another_run(
    pipeline_run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    source, _, cache = pipeline_run
    args = [*TINY, f"reuse_from={source}", "pipeline.he.num_samples=2"]
    args += ["pipeline.he.baseline=false", "reuse_stages=[baseline,linearize,poly,cryptogcn]"]
    proc = run_cli(args, tmp_path, cache)
    assert_ok(proc)
    run = run_folder(proc)
    assert run != source
    assert (proc.stdout + proc.stderr).count("reused from") == 4
    assert not (run / "baseline" / "checkpoints").exists()  # nothing retrained
    record = json.loads((run / "baseline" / "stage.json").read_text())
    assert record["reused_from"] == str(source.resolve())  # this run can be reused in turn
    metrics = json.loads((run / "metrics.json").read_text())
    source_metrics = json.loads((source / "metrics.json").read_text())
    assert metrics["poly/test_acc"] == source_metrics["poly/test_acc"]
    assert metrics["he/agreement"] == 1.0
    assert not any(key.startswith("he_baseline/") for key in metrics)


def test_reuse_from_a_folder_without_stages_fails(tmp_path: Path) -> None:
    proc = run_cli([*TINY, f"reuse_from={tmp_path}"], tmp_path / "logs", tmp_path / "cache")
    assert proc.returncode != 0
    assert "has no finished stage ['baseline', 'cryptogcn']" in proc.stdout + proc.stderr


class TinyVectors(pl.LightningDataModule):
    """32 random vectors of ``features`` values, the target their sum."""

    def __init__(self, features: int = 6, outputs: int = 1) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(features)
        self.x = torch.randn(32, features, generator=generator)
        self.y = self.x.sum(1, keepdim=True).repeat(1, outputs)
        self.features, self.outputs = features, outputs

    def model_kwargs(self) -> dict[str, int]:
        return {"features": self.features}

    def loader(self) -> DataLoader:
        return DataLoader(TensorDataset(self.x, self.y), batch_size=16)

    train_dataloader = val_dataloader = test_dataloader = loader


class TinySequences(TinyVectors):
    """The same vectors with several targets: another datamodule class."""

    def model_kwargs(self) -> dict[str, int]:
        return {"features": self.features, "outputs": self.outputs}


class Regression(pl.LightningModule):
    """MSE on (x, y) batches, logged as ``<split>/loss``."""

    def step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        loss = nn.functional.mse_loss(self(batch[0]), batch[1])
        self.log(f"{split}/loss", loss)
        return loss

    def training_step(self, batch, _):
        return self.step(batch, "train")

    def validation_step(self, batch, _):
        self.step(batch, "val")

    def test_step(self, batch, _):
        self.step(batch, "test")

    def configure_optimizers(self):
        return torch.optim.SGD([p for p in self.parameters() if p.requires_grad], lr=0.01)


class Tokenizer(Regression):
    """The first stage's model: features -> ``dim`` codes -> a scalar."""

    def __init__(self, features: int, dim: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encode = nn.Linear(features, dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(x))


class Generator(Regression):
    """The second stage's model: the frozen tokenizer of ``tokenizer_ckpt``, then a head."""

    def __init__(self, tokenizer_ckpt: str, features: int, outputs: int, hidden: int) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer = Tokenizer.load_from_checkpoint(tokenizer_ckpt).requires_grad_(False)
        assert self.tokenizer.hparams.features == features
        self.head = nn.Sequential(
            nn.Linear(self.tokenizer.hparams.dim, hidden), nn.Tanh(), nn.Linear(hidden, outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tokenizer.encode(x))


def rebuild_stage(ctx: StageContext) -> dict[str, float]:
    """A function stage: rebuild the generator stage's model and load its best checkpoint."""
    model = ctx.build_model("generator")
    trained = torch.load(ctx.done["generator"]["best_ckpt"], weights_only=False)["state_dict"]
    model.load_state_dict(trained)
    tokenizer = torch.load(ctx.done["tokenizer"]["best_ckpt"], weights_only=False)["state_dict"]
    loaded = all(torch.equal(model.tokenizer.state_dict()[k], v) for k, v in tokenizer.items())
    generator_cfg = ctx.stage_config("generator")
    return {
        "check/is_generator": float(isinstance(model, Generator)),
        "check/outputs": float(model.hparams.outputs),
        "check/no_tokenizer_keys": float("dim" not in model.hparams),
        "check/tokenizer_loaded": float(loaded),
        "check/own_folder": float(ctx.stage_dir.is_dir() and ctx.stage_dir.name == ctx.name),
        "check/shared_data": float(isinstance(ctx.datamodule, TinyVectors)),
        "check/generator_max_epochs": float(generator_cfg.trainer.max_epochs),
    }


def test_stages_train_different_model_classes(tmp_path: Path) -> None:
    """The generator stage names another model class and datamodule: they replace the run's
    (a merge would hand the tokenizer's ``dim`` to the generator and fail)."""
    cfg = OmegaConf.create(
        {
            "task_name": "two_classes",
            "seed": 0,
            "monitor": "val/loss",
            "monitor_mode": "min",
            "optimized_metric": "generator/test_loss",
            "paths": {"output_dir": str(tmp_path)},
            "task": {"_target_": "tasks.pipeline.run_pipeline", "_partial_": True},
            "datamodule": {"_target_": f"{__name__}.TinyVectors"},
            "model": {"_target_": f"{__name__}.Tokenizer", "dim": 3},
            "trainer": {
                "_target_": "pytorch_lightning.Trainer",
                "default_root_dir": "${paths.output_dir}",
                "max_epochs": 2,
                "accelerator": "cpu",
                "devices": 1,
                "enable_progress_bar": False,
                "enable_model_summary": False,
            },
            "callbacks": {
                "model_checkpoint": {
                    "_target_": "pytorch_lightning.callbacks.ModelCheckpoint",
                    "dirpath": "${paths.output_dir}/checkpoints",
                    "monitor": "${monitor}",
                    "mode": "${monitor_mode}",
                }
            },
            "stages": ["tokenizer", "generator", "check"],
            "pipeline": {
                "tokenizer": {},
                "generator": {
                    "inputs": {"tokenizer_ckpt": "tokenizer"},
                    "model": {"_target_": f"{__name__}.Generator", "hidden": 5},
                    "datamodule": {"_target_": f"{__name__}.TinySequences", "outputs": 2},
                    "trainer": {"max_epochs": 1},
                },
                "check": {"kind": "check", "_target_": f"{__name__}.rebuild_stage"},
            },
        }
    )
    assert run_task(cfg) > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for stage in ("tokenizer", "generator"):
        record = json.loads((tmp_path / stage / "stage.json").read_text())
        assert Path(record["best_ckpt"]).is_file() and str(tmp_path / stage) in record["best_ckpt"]
        assert f"{stage}/test_loss" in metrics
    assert {key: metrics[key] for key in metrics if key.startswith("check/")} == {
        "check/is_generator": 1.0,
        "check/outputs": 2.0,
        "check/no_tokenizer_keys": 1.0,
        "check/tokenizer_loaded": 1.0,
        "check/own_folder": 1.0,
        "check/shared_data": 1.0,
        "check/generator_max_epochs": 1.0,
    }
