"""Staged pipelines: each stage trains (or evaluates) in ``<run>/<stage>/`` and hands its best
checkpoint to the next; a finished stage is skipped when the pipeline runs again in the same
folder (``hydra.run.dir=<run folder>``).

The experiment lists ``stages`` and, under ``pipeline.<stage>``, what each stage changes:
``kind: train`` stages patch ``model`` and ``trainer`` (an ``optimizer`` or ``scheduler``
given there replaces the default one whole) and may set their own ``monitor``/``monitor_mode``
and name the earlier stages whose best checkpoints they need (``inputs: {teacher_ckpt: baseline}``); other kinds
name a function (``_target_``) called as ``fn(cfg, stage_cfg, datamodule, run_dir, done) -> metrics``.

``reuse_from=<run folder>`` takes the ``reuse_stages`` finished there (their checkpoints and
metrics) as finished here, so a sweep over a later stage's settings trains the stages it does
not change once:

    python run.py -m experiment=lingcn_ntu reuse_from=<run> reuse_stages=[baseline] \
        pipeline.linearize.model.mu=0.5,2
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from tasks.common import optimized_value, update_metrics_json, validate_run_config
from tasks.train import build_model, build_trainer, fit_and_test

log = logging.getLogger(__name__)
DONE_FILE = "stage.json"
REPLACED = ("optimizer", "scheduler")
# top-level keys a stage may set for itself (the checkpoint callback reads ${monitor})
STAGE_KEYS = ("monitor", "monitor_mode")


def read_done(run_dir: Path) -> dict[str, dict]:
    """The finished stages of a run folder: name → their ``stage.json``."""
    done = {}
    for path in sorted(run_dir.glob(f"*/{DONE_FILE}")):
        done[path.parent.name] = json.loads(path.read_text())
    return done


def reused_stages(source: str | None, names: list[str]) -> dict[str, dict]:
    """The finished stages ``names`` of the run folder ``source``; an error when one is missing."""
    if not source:
        return {}
    folder = Path(source).expanduser().resolve()
    found = {name: rec for name, rec in read_done(folder).items() if name in names}
    missing = [name for name in names if name not in found]
    if missing:
        raise ValueError(
            f"reuse_from={source!r}: {folder} has no finished stage {missing} (a finished "
            f"stage has <stage>/{DONE_FILE}); give the folder of an earlier run of this "
            "experiment that finished them, or change reuse_stages"
        )
    return found


def stage_config(cfg: DictConfig, name: str, stage_dir: Path, inputs: dict[str, str]) -> DictConfig:
    """The run config as this training stage sees it: patched model/trainer, its own folder."""
    spec = cfg.pipeline[name]
    stage_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(stage_cfg):
        stage_cfg.paths.output_dir = str(stage_dir)
        model_patch = OmegaConf.to_container(spec.get("model", {}), resolve=False)
        for key in REPLACED:
            if key in model_patch:
                stage_cfg.model[key] = model_patch.pop(key)
        stage_cfg.model = OmegaConf.merge(stage_cfg.model, model_patch, inputs)
        stage_cfg.trainer = OmegaConf.merge(stage_cfg.trainer, spec.get("trainer", {}))
        for key in STAGE_KEYS:
            if key in spec:  # monitor: null saves the last epoch instead of the best
                stage_cfg[key] = spec[key]
    return stage_cfg


def run_pipeline(cfg: DictConfig) -> float | None:
    """Run ``cfg.stages`` in order in this run folder; return ``cfg.optimized_metric``."""
    validate_run_config(cfg)
    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in cfg.pipeline]
    if unknown:
        raise ValueError(
            f"stages={stages}: {unknown} not defined; this experiment has {list(cfg.pipeline)}"
        )
    run_dir = Path(cfg.paths.output_dir)
    done = read_done(run_dir)
    reuse = list(cfg.get("reuse_stages") or [])
    for name, record in reused_stages(cfg.get("reuse_from"), reuse).items():
        if name not in done:
            log.info("Stage %s reused from %s", name, cfg.reuse_from)
            done[name] = record
    for name in stages:
        needs = dict(cfg.pipeline[name].get("inputs", {}) or {})
        missing = [s for s in needs.values() if s not in done and s not in stages]
        if missing:
            raise ValueError(
                f"stage {name!r} needs the finished stage(s) {missing}: add them to "
                f"stages= or rerun in the run folder that has them"
            )
    datamodule = hydra.utils.instantiate(cfg.datamodule)
    metrics: dict[str, float] = {}
    for index, name in enumerate(stages):
        if name in done:
            log.info("Stage %s finished earlier: skipped", name)
            metrics.update(done[name]["metrics"])
            update_metrics_json(run_dir, done[name]["metrics"])
            continue
        spec = cfg.pipeline[name]
        stage_dir = run_dir / name
        stage_dir.mkdir(parents=True, exist_ok=True)
        log.info("=== stage %s ===", name)
        if cfg.get("seed") is not None:
            pl.seed_everything(cfg.seed + index, workers=True)  # the same on a resumed run
        if spec.get("kind", "train") == "train":
            inputs = {
                arg: done[stage]["best_ckpt"]
                for arg, stage in (spec.get("inputs", {}) or {}).items()
            }
            stage_cfg = stage_config(cfg, name, stage_dir, inputs)
            model = build_model(stage_cfg, datamodule)
            trainer = build_trainer(stage_cfg)
            raw = fit_and_test(stage_cfg, datamodule, model, trainer)
            stage_metrics = {f"{name}/{k.replace('/', '_')}": v for k, v in raw.items()}
            record = {"best_ckpt": _stage_checkpoint(trainer, stage_dir), "metrics": stage_metrics}
        else:
            fn = hydra.utils.get_method(spec._target_)
            stage_metrics = fn(cfg, spec, datamodule, run_dir, done)
            record = {"metrics": stage_metrics}
        (stage_dir / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        done[name] = record
        metrics.update(stage_metrics)
        update_metrics_json(run_dir, stage_metrics)
    return optimized_value(metrics, cfg.get("optimized_metric"))


def _stage_checkpoint(trainer: pl.Trainer, stage_dir: Path) -> str:
    """The stage's best checkpoint; its final weights when none was kept (fast_dev_run)."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.best_model_path:
        return callback.best_model_path
    path = stage_dir / "checkpoints" / "final.ckpt"
    trainer.save_checkpoint(path)
    return str(path)
