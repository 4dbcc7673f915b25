"""The GNN nets and the node-classification module on tiny random graphs."""

from __future__ import annotations

from functools import partial

import pytest
import pytorch_lightning as pl
import torch
from torch_geometric.data import Data

from lightning_modules.gnn.module import NodeClassifier
from lightning_modules.gnn.nets import GNN


def tiny_graph(num_classes: int = 3, multilabel: bool = False, n: int = 40) -> Data:
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.randint(0, n, (2, 160), generator=gen)
    x = torch.randn(n, 8, generator=gen)
    if multilabel:
        y = (torch.rand(n, num_classes, generator=gen) > 0.5).float()
    else:
        y = torch.randint(0, num_classes, (n,), generator=gen)
    split = torch.arange(n) % 4
    return Data(
        x=x,
        y=y,
        edge_index=edge_index,
        train_mask=split < 2,
        val_mask=split == 2,
        test_mask=split == 3,
    )


@pytest.mark.parametrize("conv", ["sage", "gcn", "gin"])
@pytest.mark.parametrize("norm", ["none", "layer"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_gnn_shapes_and_gradients(conv: str, norm: str, num_layers: int) -> None:
    data = tiny_graph()
    net = GNN(8, 16, 3, num_layers=num_layers, conv=conv, norm=norm)
    out = net(data.x, data.edge_index)
    assert out.shape == (40, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_sage_layer_is_mean_aggregation() -> None:
    # one SAGE layer with identity weights: out_i = x_i + mean_{j -> i} x_j
    net = GNN(2, 2, 2, num_layers=1, conv="sage", dropout=0.0)
    conv = net.convs[0]
    with torch.no_grad():
        conv.lin_l.weight.copy_(torch.eye(2))
        conv.lin_l.bias.zero_()
        conv.lin_r.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]])
    edge_index = torch.tensor([[1, 2, 0], [0, 0, 1]])  # 1->0, 2->0, 0->1
    out = net(x, edge_index)
    expected = torch.tensor([[1.0 + 2.0, 0.0 + 3.0], [1.0, 2.0], [4.0, 4.0]])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_channels": 0}, "hidden_channels=0"),
        ({"num_layers": 0}, "num_layers=0"),
        ({"dropout": 1.0}, "dropout=1.0"),
        ({"norm": "batch"}, "norm=batch"),
        ({"nonlinearity": "swish"}, "nonlinearity=swish"),
        ({"conv": "gat"}, "conv=gat"),
    ],
)
def test_gnn_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GNN(8, **{"hidden_channels": 16, "out_channels": 3, **kwargs})


def fit(model: NodeClassifier, data: Data, epochs: int) -> pl.Trainer:
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader([data], batch_size=None, collate_fn=lambda d: d)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    return trainer


@pytest.mark.parametrize(
    ("task_type", "metric"),
    [
        ("multiclass", "acc"),
        ("multilabel", "f1_micro"),
        ("multilabel", "rocauc"),
    ],
)
def test_node_classifier_logs_its_metric(task_type: str, metric: str) -> None:
    pl.seed_everything(0)
    data = tiny_graph(num_classes=4, multilabel=task_type == "multilabel")
    model = NodeClassifier(
        8,
        4,
        partial(torch.optim.Adam, lr=0.01),
        task_type=task_type,
        metric=metric,
        hidden_channels=16,
        dropout=0.0,
    )
    trainer = fit(model, data, epochs=3)
    logged = trainer.callback_metrics
    for key in (
        f"train/{metric}",
        f"val/{metric}",
        f"val/{metric}_best",
        "train/loss",
        "train/epoch_time_s",
    ):
        assert key in logged, key
    assert logged[f"val/{metric}_best"] >= logged[f"val/{metric}"]


def test_metric_must_fit_the_task() -> None:
    with pytest.raises(ValueError, match="metric=acc: does not fit task_type=multilabel"):
        NodeClassifier(8, 4, partial(torch.optim.Adam), task_type="multilabel", metric="acc")


def test_golden_loss() -> None:
    """Loss after 5 full-batch steps on a fixed tiny graph; catches silent regressions."""
    pl.seed_everything(0)
    data = tiny_graph()
    model = NodeClassifier(
        8, 3, partial(torch.optim.Adam, lr=0.01, weight_decay=5e-4), hidden_channels=16, dropout=0.0
    )
    optimizer = model.configure_optimizers()["optimizer"]
    for _ in range(5):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            model(data)[data.train_mask], data.y[data.train_mask]
        )
        loss.backward()
        optimizer.step()
    assert loss.item() == pytest.approx(GOLDEN_LOSS, abs=1e-4)


# recorded with torch 2.14.1 and PyG 2.8.1 on CPU; a change here means training changed
GOLDEN_LOSS = 1.0016079
