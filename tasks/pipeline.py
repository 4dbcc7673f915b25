"""Staged pipelines: each stage trains (or evaluates) in ``<run>/<stage>/`` and hands its best
checkpoint to the next; a finished stage is skipped when the pipeline runs again in the same
folder (``hydra.run.dir=<run folder>``).

The experiment lists ``stages`` and, under ``pipeline.<stage>``, what each stage changes:
``kind: train`` stages patch ``model`` and ``trainer`` (an ``optimizer`` or ``scheduler``
given there replaces the default one whole), may set their own ``monitor``/``monitor_mode``
and name the earlier stages whose best checkpoints they need (``inputs: {teacher_ckpt:
baseline}``). A stage's ``model`` (or ``datamodule``) with a ``_target_`` of another class
replaces the run's whole instead of patching it, so a stage may train a different model (a
tokenizer, then a generator that loads it) on different data. Other kinds name a function
(``_target_``) called as ``fn(ctx: StageContext) -> dict[str, float]``.

``reuse_from=<run folder>`` takes the ``reuse_stages`` finished there (their checkpoints and
metrics) as finished here (recorded in ``<stage>/stage.json`` with ``reused_from``, so the new
folder can be reused in turn), so a sweep over a later stage's settings trains the stages it does
not change once:

    python run.py -m experiment=lingcn_ntu reuse_from=<run> reuse_stages=[baseline] \
        pipeline.linearize.model.mu=0.5,2
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from effml.errors import ConfigError
from tasks.core import optimized_value, update_metrics_json
from tasks.lightning import build_model, build_trainer, fit_and_test
from tasks.validation import validate_lightning_config

log = logging.getLogger(__name__)
DONE_FILE = "stage.json"
REPLACED = ("optimizer", "scheduler")
# top-level keys a stage may set for itself (the checkpoint callback reads ${monitor})
STAGE_KEYS = ("monitor", "monitor_mode")


@dataclass
class StageContext:
    """What a stage works with: the run, its own folder, the stages finished before it.

    Attributes:
        cfg: the whole run config.
        name: this stage's name.
        spec: this stage's definition, ``cfg.pipeline[name]``.
        run_dir: the pipeline's run folder.
        stage_dir: ``run_dir / name`` (created).
        done: the finished stages: name -> ``{"best_ckpt": path (train stages), "metrics":
            {"<stage>/<metric>": value}}``.
        datamodule: the run's shared datamodule (None when the experiment has none).
    """

    cfg: DictConfig
    name: str
    spec: DictConfig
    run_dir: Path
    stage_dir: Path
    done: dict[str, dict]
    datamodule: Any

    def stage_config(self, name: str | None = None) -> DictConfig:
        """The run config as training stage ``name`` (default: this one) trains: patched
        model, datamodule and trainer, ``inputs`` resolved to the finished stages'
        checkpoints, ``paths.output_dir`` its own folder."""
        name = name or self.name
        inputs = stage_inputs(self.cfg, name, self.done)
        return stage_config(self.cfg, name, self.run_dir / name, inputs)

    def build_model(self, name: str | None = None) -> pl.LightningModule:
        """Training stage ``name``'s model (default: this one), built as that stage built it
        before training; its trained weights are in ``done[name]["best_ckpt"]``."""
        name = name or self.name
        stage_cfg = self.stage_config(name)
        return build_model(stage_cfg, stage_datamodule(stage_cfg, name, self.datamodule))


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
        raise ConfigError(
            "reuse_from",
            source,
            f"{folder} has no finished stage {missing} (a finished stage has <stage>/{DONE_FILE})",
            fix="Give the folder of an earlier run of this experiment that finished them, or "
            "change reuse_stages",
        )
    return found


def stage_inputs(cfg: DictConfig, name: str, done: dict[str, dict]) -> dict[str, str]:
    """Stage ``name``'s ``inputs`` as arguments: argument -> the named stage's checkpoint."""
    inputs = {}
    for arg, stage in (cfg.pipeline[name].get("inputs", {}) or {}).items():
        if "best_ckpt" not in done.get(stage, {}):
            raise ValueError(
                f"stage {name!r} needs the checkpoint of training stage {stage!r} "
                f"(inputs.{arg}), which has not finished; finished: {sorted(done)}"
            )
        inputs[arg] = done[stage]["best_ckpt"]
    return inputs


def replaced_or_merged(base: DictConfig | None, patch: dict) -> DictConfig:
    """``patch`` merged into ``base``; ``patch`` alone when ``base`` is absent or the patch
    names another class (``_target_``), so no key of the other class leaks in."""
    target = patch.get("_target_")
    if base is None or (target is not None and target != base.get("_target_")):
        return OmegaConf.create(patch)
    return OmegaConf.merge(base, patch)


def unresolved(node: DictConfig | None) -> dict:
    """A stage's patch as a plain dict, interpolations kept (they resolve in the stage config)."""
    return OmegaConf.to_container(node, resolve=False) if node is not None else {}


def stage_config(cfg: DictConfig, name: str, stage_dir: Path, inputs: dict[str, str]) -> DictConfig:
    """The run config as training stage ``name`` sees it: patched model, datamodule and
    trainer, ``inputs`` (argument -> checkpoint) passed to the model, ``stage_dir`` its folder."""
    spec = cfg.pipeline[name]
    stage_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(stage_cfg):
        stage_cfg.paths.output_dir = str(stage_dir)
        model_patch = unresolved(spec.get("model"))
        model = stage_cfg.get("model")
        if model is not None and model_patch.get("_target_") in (None, model.get("_target_")):
            for key in REPLACED:
                if key in model_patch:
                    model[key] = model_patch.pop(key)
        stage_cfg.model = OmegaConf.merge(replaced_or_merged(model, model_patch), inputs)
        if "datamodule" in spec:
            datamodule_patch = unresolved(spec.datamodule)
            stage_cfg.datamodule = replaced_or_merged(stage_cfg.get("datamodule"), datamodule_patch)
        trainer_patch = spec.get("trainer") or {}
        stage_cfg.trainer = OmegaConf.merge(stage_cfg.get("trainer") or {}, trainer_patch)
        for key in STAGE_KEYS:
            if key in spec:  # monitor: null saves the last epoch instead of the best
                stage_cfg[key] = spec[key]
    return stage_cfg


def stage_datamodule(stage_cfg: DictConfig, name: str, shared: Any) -> Any:
    """The data stage ``name`` trains on: its own ``datamodule`` if it gives one, else the
    run's shared one."""
    if "datamodule" in stage_cfg.pipeline[name]:
        log.info("Instantiating stage %s's datamodule <%s>", name, stage_cfg.datamodule._target_)
        return hydra.utils.instantiate(stage_cfg.datamodule)
    if shared is None:
        raise ValueError(
            f"stage {name!r} trains, but the experiment has no datamodule: select one "
            f"(datamodule=<name>) or give the stage its own (pipeline.{name}.datamodule)"
        )
    return shared


def check_pipeline(cfg: DictConfig, spec: DictConfig | None = None) -> None:
    """The checks the config alone decides: the stages exist, have a known kind, and every
    stage's ``inputs`` name a training stage that runs before it or finished earlier (in this
    run folder or in ``reuse_from``)."""
    validate_lightning_config(cfg)
    stages = list(cfg.get("stages") or [])
    pipeline = cfg.get("pipeline") or {}
    if not stages:
        raise ConfigError("stages", stages, "lists no stage", fix=f"Choose from {list(pipeline)}")
    unknown = [s for s in stages if s not in pipeline]
    if unknown:
        raise ConfigError(
            "stages", stages, f"{unknown} not defined; this experiment has {list(pipeline)}"
        )
    reused = set(reused_stages(cfg.get("reuse_from"), list(cfg.get("reuse_stages") or [])))
    reused |= set(read_done(Path(cfg.paths.output_dir)))  # a rerun in the same folder
    for index, name in enumerate(stages):
        stage = pipeline[name]
        kind = stage.get("kind", "train")
        if kind != "train" and "_target_" not in stage:
            raise ConfigError(
                f"pipeline.{name}.kind",
                kind,
                "a stage that does not train names its function",
                fix=f"Set pipeline.{name}._target_=<module.function> or kind=train",
            )
        for arg, needed in (stage.get("inputs", {}) or {}).items():
            before = stages[:index]
            if needed not in before and needed not in reused:
                raise ConfigError(
                    f"pipeline.{name}.inputs.{arg}",
                    needed,
                    f"stage {name!r} needs the finished stage {needed!r}, which does not run "
                    f"before it (stages before it: {before})",
                    fix=f"Add {needed!r} to stages= before {name!r}, or reuse it with "
                    f"reuse_from=<run folder> reuse_stages=[{needed}]",
                )


def run_pipeline(cfg: DictConfig) -> float | None:
    """Run ``cfg.stages`` in order in this run folder; return ``cfg.optimized_metric``."""
    stages = list(cfg.stages)
    run_dir = Path(cfg.paths.output_dir)
    done = read_done(run_dir)
    reuse = list(cfg.get("reuse_stages") or [])
    for name, record in reused_stages(cfg.get("reuse_from"), reuse).items():
        if name not in done:
            log.info("Stage %s reused from %s", name, cfg.reuse_from)
            # recorded here too, so a later run may reuse it from this folder in turn
            record = {"reused_from": str(Path(cfg.reuse_from).expanduser().resolve()), **record}
            (run_dir / name).mkdir(parents=True, exist_ok=True)
            (run_dir / name / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
            done[name] = record
    datamodule = hydra.utils.instantiate(cfg.datamodule) if cfg.get("datamodule") else None
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
        ctx = StageContext(cfg, name, spec, run_dir, stage_dir, done, datamodule)
        if spec.get("kind", "train") == "train":
            record = train_stage(ctx)
        else:
            record = {"metrics": hydra.utils.get_method(spec._target_)(ctx)}
        (stage_dir / DONE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        done[name] = record
        metrics.update(record["metrics"])
        update_metrics_json(run_dir, record["metrics"])
    return optimized_value(metrics, cfg.get("optimized_metric"))


def train_stage(ctx: StageContext) -> dict:
    """Fit and test a training stage in its folder: its best checkpoint and its metrics,
    named ``<stage>/<split>_<name>``. A stage interrupted earlier in this folder resumes from
    its ``checkpoints/last.ckpt``."""
    stage_cfg = ctx.stage_config()
    datamodule = stage_datamodule(stage_cfg, ctx.name, ctx.datamodule)
    model = build_model(stage_cfg, datamodule)
    trainer = build_trainer(stage_cfg)
    last = ctx.stage_dir / "checkpoints" / "last.ckpt"
    resume = str(last) if last.is_file() and stage_cfg.get("train", True) else None
    if resume:
        log.info("Stage %s was interrupted: resuming from %s", ctx.name, resume)
    changed = (
        f"Its config changed since the stage was interrupted: delete {last.parent} to train the "
        "stage from the start, or rerun with the config it was trained with"
    )
    raw = fit_and_test(stage_cfg, datamodule, model, trainer, resume, ckpt_fix=changed)
    metrics = {f"{ctx.name}/{k.replace('/', '_')}": v for k, v in raw.items()}
    return {"best_ckpt": stage_checkpoint(trainer, ctx.stage_dir), "metrics": metrics}


def stage_checkpoint(trainer: pl.Trainer, stage_dir: Path) -> str:
    """The stage's best checkpoint; its final weights when none was kept (fast_dev_run)."""
    callback = trainer.checkpoint_callback
    if callback is not None and callback.best_model_path:
        return callback.best_model_path
    path = stage_dir / "checkpoints" / "final.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


def resume_pipeline(cfg: DictConfig) -> list[str]:
    """The overrides that rerun the pipeline in this folder (finished stages are skipped)."""
    return [f"hydra.run.dir={cfg.paths.output_dir}"]


run_pipeline.check_config = check_pipeline
run_pipeline.resume_overrides = resume_pipeline
