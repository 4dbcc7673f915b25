"""Full-batch node classification: one graph per batch, masks choose the split."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchmetrics
from torch_geometric.data import Data

from effml.checks import check_choice, check_int, with_defaults
from effml.errors import ConfigError
from lightning_modules.base import EffmlModule
from lightning_modules.gnn.maxk import MaxKGNN
from lightning_modules.gnn.nets import GNN

TASK_METRICS = {"multiclass": ("acc",), "multilabel": ("f1_micro", "rocauc")}
STRUCTURES = ("stack", "paper")
# the NodeClassifier arguments both nets take under the same name (k, backend: MaxKGNN only)
NET_KEYS = (
    "in_channels",
    "hidden_channels",
    "num_layers",
    "conv",
    "dropout",
    "norm",
    "nonlinearity",
)


def make_metric(task_type: str, metric: str, num_classes: int) -> torchmetrics.Metric:
    """Accuracy (multiclass), micro-F1 or macro ROC-AUC over labels (multilabel); the pair is
    one of ``TASK_METRICS`` (``NodeClassifier.check_config``)."""
    if metric == "acc":
        return torchmetrics.Accuracy(task="multiclass", num_classes=num_classes)
    if metric == "f1_micro":
        return torchmetrics.F1Score(task="multilabel", num_labels=num_classes, average="micro")
    return torchmetrics.AUROC(task="multilabel", num_labels=num_classes)


class NodeClassifier(EffmlModule):
    """Trains a GNN on the graph's train mask; logs ``{train,val,test}/<metric>``.

    ``structure`` picks the net: "stack" is :class:`GNN` (PyG convs with norm → σ → dropout
    between them), "paper" is :class:`MaxKGNN` (MaxK-GNN's lin_in → [σ → conv → norm] × L →
    lin_out, where ``nonlinearity="maxk"`` aggregates through the ``ops.maxk`` kernels).

    ``val/<metric>_best`` is the best validation score so far; the training task tests the
    checkpoint of that epoch, so ``test/<metric>`` is the best-validation-epoch test score.

    Args:
        in_channels, num_classes, task_type, metric: from the datamodule (``model_kwargs()``).
        structure: "stack" (:class:`GNN`) or "paper" (:class:`MaxKGNN`).
        conv, hidden_channels, num_layers, dropout, norm, nonlinearity: see :class:`GNN` and
            :class:`MaxKGNN`; "maxk" needs ``structure="paper"``.
        k, backend: MaxK's kept entries per row and ``ops.maxk`` backend (paper only).
        aggregation: "pyg" (PyG's convolutions), "torch_sparse" or "accel" (effml's GCN/SAGE
            layers aggregating through ``ops.spmm``: torch.sparse, or the Accel-GCN kernel);
            stack only.
        optimizer, scheduler: partial constructors (see :class:`EffmlModule`).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None = None,
        task_type: str = "multiclass",
        metric: str = "acc",
        conv: str = "sage",
        hidden_channels: int = 256,
        num_layers: int = 2,
        dropout: float = 0.5,
        norm: str = "none",
        nonlinearity: str = "relu",
        structure: str = "stack",
        k: int = 32,
        backend: str | None = None,
        aggregation: str = "pyg",
    ) -> None:
        super().__init__(optimizer, scheduler, monitor=f"val/{metric}")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.check_config(self.hparams)
        if structure == "paper":
            self.net: GNN | MaxKGNN = MaxKGNN(
                in_channels,
                hidden_channels,
                num_classes,
                num_layers,
                conv=conv,
                nonlinearity=nonlinearity,
                k=k,
                dropout=dropout,
                norm=norm,
                backend=backend,
            )
        else:
            self.net = GNN(
                in_channels,
                hidden_channels,
                num_classes,
                num_layers,
                conv=conv,
                dropout=dropout,
                norm=norm,
                nonlinearity=nonlinearity,
                aggregation=aggregation,
            )
        self.metric_name = metric
        self.task_type = task_type
        self.train_metric = make_metric(task_type, metric, num_classes)
        self.val_metric = self.train_metric.clone()
        self.test_metric = self.train_metric.clone()
        self.val_best = torchmetrics.MaxMetric()
        self.val_best.persistent(True)  # kept in checkpoints, so a resumed run keeps its best

    @classmethod
    def check_config(cls, cfg: Mapping[str, Any]) -> None:
        """The optimizer and scheduler, a known structure and task_type with a metric of that
        task, MaxK only in the paper structure, and the chosen net's own rules
        (:meth:`GNN.check_config`, :meth:`MaxKGNN.check_config`)."""
        super().check_config(cfg)
        cfg = with_defaults(cls, cfg)
        check_choice(cfg, "structure", STRUCTURES)
        check_choice(cfg, "task_type", TASK_METRICS)
        metrics = TASK_METRICS[cfg["task_type"]]
        if cfg["metric"] not in metrics:
            raise ConfigError(
                "metric",
                cfg["metric"],
                f"does not fit task_type={cfg['task_type']}; choose one of {list(metrics)}",
                example=metrics[0],
            )
        check_int(cfg, "num_classes", minimum=1, example=7)
        if cfg["structure"] == "stack" and cfg["nonlinearity"] == "maxk":
            raise ConfigError(
                "structure",
                "stack",
                "cannot run nonlinearity=maxk: MaxK runs in the paper's layout",
                example="paper",
                fix="Or use model=maxk_gnn",
            )
        paper = cfg["structure"] == "paper"
        if paper and cfg["aggregation"] != "pyg":
            raise ConfigError(
                "aggregation",
                cfg["aggregation"],
                "applies to structure=stack (MaxK's paper layout has its own aggregation)",
                example="pyg",
            )
        net = MaxKGNN if paper else GNN
        keys = NET_KEYS + ("k", "backend") if paper else NET_KEYS + ("aggregation",)
        net.check_config({key: cfg[key] for key in keys if key in cfg})

    def forward(self, data: Data) -> torch.Tensor:
        return self.net(data.x, data.edge_index)  # (N, num_classes)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task_type == "multilabel":
            return F.binary_cross_entropy_with_logits(logits, target.float())
        return F.cross_entropy(logits, target)

    def _target(self, target: torch.Tensor) -> torch.Tensor:
        return target.long() if self.task_type == "multilabel" else target

    def _step(
        self, data: Data, mask: torch.Tensor, stage: str, metric: torchmetrics.Metric
    ) -> torch.Tensor:
        logits = self(data)[mask]
        target = data.y[mask]
        loss = self._loss(logits, target)
        metric(logits, self._target(target))
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
        self.log(f"{stage}/{self.metric_name}", metric, on_step=False, on_epoch=True, batch_size=1)
        return loss

    def training_step(self, data: Data, batch_idx: int) -> torch.Tensor:
        return self._step(data, data.train_mask, "train", self.train_metric)

    def validation_step(self, data: Data, batch_idx: int) -> None:
        self._step(data, data.val_mask, "val", self.val_metric)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        self.val_best(self.val_metric.compute())
        self.log(f"val/{self.metric_name}_best", self.val_best.compute(), sync_dist=True)

    def test_step(self, data: Data, batch_idx: int) -> None:
        self._step(data, data.test_mask, "test", self.test_metric)
