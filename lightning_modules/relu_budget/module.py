"""ReLU-budget training for private inference: the ReLU teacher, AutoReP and SNL.

``method`` picks what every activation site of the net becomes:

- ``relu``: the baseline (teacher); cross-entropy.
- ``autorep`` (Peng et al., ICCV 2023, arXiv:2308.10134): masked sites with hysteresis and a
  channel-wise polynomial (``AutoRepSite``); loss ``CE + KD_T + λ·max(0, density −
  budget/total)`` with density = kept / total over all sites (straight-through to the masks'
  aux).
- ``snl`` (Cho et al., ICML 2022, arXiv:2202.02340): continuous α, loss
  ``CE + KD_T + λ·‖α‖₁``; each epoch (or ``snl_check_every`` steps) the count of
  α > ``snl_threshold`` is taken; when it has not dropped below its lowest (after
  ``snl_patience`` checks) λ grows ×1.1; training stops once the count is within the budget.
- ``snl_finetune``: α binarised at ``snl_threshold`` (from ``init_ckpt``) and frozen; the
  weights are fine-tuned with KD.

The student starts from ``init_ckpt`` (the teacher or the previous stage); the teacher
(``teacher_ckpt``) is frozen. Logged: ``{train,val,test}/{loss,acc}``, ``val/acc_best``, the
kept ReLUs ``{train,val,test}/relu_kept`` and ``train/relu_kept_fraction`` (kept / total at the
end of each training epoch); ``val/acc_in_budget`` is the validation accuracy when the count
is within ``budget_tolerance`` of the budget and 0 otherwise, so that checkpointing on it keeps
the best network that meets the budget (AutoReP's rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effml.checks import check_choice, check_int, check_range, with_defaults
from effml.errors import CheckpointError, ConfigError
from lightning_modules.base import check_op_backend
from lightning_modules.checkpoints import load_net_state
from lightning_modules.classification import ClassificationModule
from lightning_modules.distill import kd_loss
from lightning_modules.relu_budget.resnet_cifar import build_net, check_net_config
from lightning_modules.relu_budget.sites import AutoRepSite, ReluSite, SnlSite, relu_count, sites

METHODS = ("relu", "autorep", "snl", "snl_finetune")
# the module's arguments that configure each AutoRepSite
AUTOREP_SITE_KEYS = (
    "scale",
    "threshold",
    "dapa_steps",
    "dapa_every",
    "var_min",
    "dapa_sigma",
    "dapa_rescale",
)


class ReluBudgetModule(ClassificationModule):
    """Image classifier whose ReLU count is trained down to ``budget``.

    Args:
        method: one of ``METHODS``.
        arch: ``resnet18_in`` or ``wrn_<depth>_<widen>``; ``width`` narrows it for CPU runs.
        num_classes, in_channels, image_size: from the datamodule.
        budget: kept ReLUs wanted (per image); ignored by ``relu``.
        lam: λ, the budget penalty (AutoReP) or the initial L1 weight (SNL).
        temperature: KD temperature (4); ``kd_weight`` scales the KD term.
        threshold, scale, dapa_*: the AutoReP site (``sites.AutoRepSite``).
        snl_threshold: α above it counts as a ReLU (1e-2); ``snl_growth``: λ factor (1.1).
        snl_min_drop: a check whose count fell by less than this fraction of the lowest so far
            counts as stalled (0: SNL's rule, any drop is progress; short runs raise it).
        budget_tolerance: relative slack of ``val/acc_in_budget`` (0.01: within 1%).
        aux_lr: learning rate of the mask parameters (AutoReP's aux, SNL's α); None: the
            optimizer's. Short CPU runs raise it so the masks can reach the budget in time.
        teacher_ckpt, init_ckpt: checkpoints of earlier stages (Lightning files).
        backend: ``ops.polyact`` backend of the sites (None: by device).
    """

    def __init__(
        self,
        optimizer,
        scheduler=None,
        method: str = "relu",
        arch: str = "resnet18_in",
        width: int | None = None,
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        budget: int = 12900,
        lam: float = 140.0,
        temperature: float = 4.0,
        kd_weight: float = 1.0,
        threshold: float = 0.003,
        scale: float = 0.1,
        dapa_steps: int = 500,
        dapa_every: int = 10,
        dapa_sigma: str = "std",
        dapa_rescale: tuple[float, float, float] = (1.0, 1.0, 1.0),
        var_min: float = 0.5,
        snl_threshold: float = 1e-2,
        snl_growth: float = 1.1,
        snl_patience: int = 5,
        snl_check_every: int | None = None,
        snl_min_drop: float = 0.0,
        budget_tolerance: float = 0.01,
        aux_lr: float | None = None,
        teacher_ckpt: str | None = None,
        init_ckpt: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(optimizer, scheduler, num_classes)
        dapa_rescale = tuple(float(v) for v in dapa_rescale)  # plain floats in checkpoints
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.check_config(self.hparams)
        self.method = method
        shape_kwargs = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        self.net = build_net(arch, width=width, act=self._site_factory(), **shape_kwargs)
        kept, total = relu_count(self.net)
        if method != "relu" and budget > total:
            raise ConfigError(
                "budget",
                budget,
                f"exceeds the {total} ReLUs of {arch} (width {width}) at {image_size}x{image_size}",
                fix="Lower the budget or widen the net",
            )
        self.total_relus = total
        if init_ckpt:
            self._load_student(init_ckpt)
        if method == "snl_finetune":
            for site in sites(self.net):
                site.binarize(snl_threshold)
        if teacher_ckpt:
            self.teacher = build_net(arch, width=width, **shape_kwargs)
            own = self.teacher.state_dict()  # a teacher drops a student's site state
            state = {k: v for k, v in load_net_state(teacher_ckpt).items() if k in own}
            self.teacher.load_state_dict(state)
            self.teacher.requires_grad_(False).eval()
        self.lam = lam
        self._lowest = total
        self._stalled = 0

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The classifier's (:class:`ClassificationModule`); a known method and net
        (``resnet_cifar.check_net_config``); a budget >= 1 for the masking methods; lam,
        kd_weight, budget_tolerance, snl_threshold >= 0; temperature, aux_lr > 0;
        snl_growth >= 1; snl_patience, snl_check_every >= 1; snl_min_drop in [0, 1); a known
        backend; for autorep the site's rules (:meth:`AutoRepSite.check_config`)."""
        super().check_config(cfg)
        cfg = with_defaults(cls, cfg)
        check_choice(cfg, "method", METHODS)
        check_net_config(cfg)
        if cfg["method"] != "relu":
            check_int(cfg, "budget", minimum=1, example=12900)
        check_range(cfg, "lam", 0.0, None, example=140.0)
        check_range(cfg, "temperature", 0.0, None, low_open=True, example=4.0)
        check_range(cfg, "kd_weight", 0.0, None, example=1.0)
        check_range(cfg, "snl_threshold", 0.0, None, example=0.01)
        check_range(cfg, "snl_growth", 1.0, None, example=1.1)
        check_int(cfg, "snl_patience", minimum=1, example=5)
        check_int(cfg, "snl_check_every", minimum=1, example=10)
        check_range(cfg, "snl_min_drop", 0.0, 1.0, high_open=True, example=0.05)
        check_range(cfg, "budget_tolerance", 0.0, None, example=0.01)
        check_range(cfg, "aux_lr", 0.0, None, low_open=True, example=0.03)
        check_op_backend(cfg)
        if cfg["method"] == "autorep":
            AutoRepSite.check_config({key: cfg[key] for key in AUTOREP_SITE_KEYS})

    def optimizer_params(self) -> list:
        """The trainable parameters, the masks (aux / α) in their own group if aux_lr is set."""
        trainable = super().optimizer_params()
        if self.hparams.aux_lr is None:
            return trainable
        masks = {
            id(s.aux if isinstance(s, AutoRepSite) else s.alpha)
            for s in sites(self.net)
            if not isinstance(s, ReluSite)
        }
        groups = [
            {"params": [p for p in trainable if id(p) not in masks]},
            {"params": [p for p in trainable if id(p) in masks], "lr": self.hparams.aux_lr},
        ]
        return [g for g in groups if g["params"]]

    def _site_factory(self):
        hp = self.hparams
        if hp.method == "relu":
            return ReluSite
        if hp.method == "autorep":
            return lambda shape: AutoRepSite(
                shape,
                scale=hp.scale,
                threshold=hp.threshold,
                dapa_steps=hp.dapa_steps,
                dapa_every=hp.dapa_every,
                var_min=hp.var_min,
                dapa_sigma=hp.dapa_sigma,
                dapa_rescale=tuple(hp.dapa_rescale),
                backend=hp.backend,
            )
        return lambda shape: SnlSite(shape, backend=hp.backend)

    def _load_student(self, path: str) -> None:
        """Weights from an earlier stage; sites' own parameters load when the kinds match."""
        state = load_net_state(path)
        own = self.net.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        self.net.load_state_dict(matched, strict=False)
        missing = [k for k in own if k not in matched and not _is_site_key(self.net, k)]
        if missing:
            raise CheckpointError(
                f"init_ckpt={path}: lacks weights {missing[:5]}. Give a checkpoint of the same "
                "arch and width"
            )

    # ---- counting and losses ------------------------------------------------------------------

    def relu_kept(self) -> int:
        """Kept ReLUs per image now (masks; α > snl_threshold for SNL before binarising)."""
        if self.method == "snl":
            thr = self.hparams.snl_threshold
            return int(sum(int((s.alpha.detach() > thr).sum()) for s in sites(self.net)))
        return relu_count(self.net)[0]

    def _penalty(self) -> torch.Tensor:
        hp = self.hparams
        if self.method == "autorep":
            gates = [s.last_gate for s in sites(self.net)]
            density = sum(g.sum() for g in gates) / self.total_relus
            self.log("train/relu_density", density, on_step=False, on_epoch=True)
            return self.lam * F.relu(density - hp.budget / self.total_relus)
        if self.method == "snl":
            l1 = sum(s.alpha.abs().sum() for s in sites(self.net))
            return self.lam * l1
        return torch.zeros((), device=self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """CE, + kd_weight·KD_T with a teacher, + the method's penalty (AutoReP, SNL)."""
        logits = self(x)  # (B, classes)
        loss = F.cross_entropy(logits, y)
        if self.teacher is not None:
            with torch.no_grad():
                t_logits = self.teacher(x)
            kd = kd_loss(logits, t_logits, self.hparams.temperature)
            self.log("train/kd", kd, on_step=False, on_epoch=True)
            loss = loss + self.hparams.kd_weight * kd
        if self.method in ("autorep", "snl"):
            penalty = self._penalty()
            self.log("train/penalty", penalty, on_step=False, on_epoch=True)
            loss = loss + penalty
        return loss, logits

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(outputs, batch, batch_idx)
        every = self.hparams.snl_check_every
        if self.method == "snl" and every and (self.global_step % every == 0):
            self._snl_check()

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        if self.method == "snl" and not self.hparams.snl_check_every:
            self._snl_check()
        kept = self.relu_kept()
        self.log("train/relu_kept", float(kept))
        self.log("train/relu_kept_fraction", kept / self.total_relus)

    def _snl_check(self) -> None:
        """SNL's schedule: stop within budget; grow λ when the count stalls."""
        kept = self.relu_kept()
        if kept <= self.hparams.budget:
            self.trainer.should_stop = True
            return
        if kept < self._lowest * (1 - self.hparams.snl_min_drop):
            self._lowest, self._stalled = kept, 0
            return
        self._lowest = min(self._lowest, kept)
        self._stalled += 1
        if self._stalled >= self.hparams.snl_patience:
            self.lam *= self.hparams.snl_growth
        self.log("train/snl_lambda", self.lam)

    def validation_epoch_metrics(self, val_acc: torch.Tensor) -> dict[str, torch.Tensor | float]:
        kept = self.relu_kept()
        in_budget = self.method == "relu" or kept <= self.hparams.budget * (
            1 + self.hparams.budget_tolerance
        )
        return {
            "val/relu_kept": float(kept),
            "val/acc_in_budget": val_acc if in_budget else torch.zeros_like(val_acc),
        }

    def test_epoch_metrics(self) -> dict[str, float]:
        return {"test/relu_kept": float(self.relu_kept())}


def _is_site_key(net: nn.Module, key: str) -> bool:
    """Whether ``key`` belongs to a masked site (or its polynomial), whose state a ReLU
    checkpoint does not have."""
    parts = key.split(".")[:-1]
    return any(
        isinstance(net.get_submodule(".".join(parts[:n])), (AutoRepSite, SnlSite))
        for n in range(1, len(parts) + 1)
    )
