"""ST-GCN: the NTU spatial partition, the variants' shapes, activation-site factories."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lightning_modules.lingcn.stgcn import NTU_CENTER, STGCN, VARIANTS, spatial_partition


def test_spatial_partition_is_the_normalised_one_hop_graph() -> None:
    slices = spatial_partition()
    assert slices.shape == (3, 25, 25)
    total = slices.sum(axis=0)
    # column-normalised 1-hop adjacency with self loops: every column sums to 1
    np.testing.assert_allclose(total.sum(axis=0), np.ones(25), rtol=1e-6)
    assert (total > 0).sum() == 25 + 2 * 24  # self loops + both directions of 24 bones
    # self loops are "root" entries; the three slices never overlap
    assert np.all(np.diag(slices[0]) > 0)
    assert np.all((slices > 0).sum(axis=0) <= 1)
    # spine centre (21 → index 20) to its neighbour 2 (index 1): node 1 is farther from the
    # centre than node 20, so (j=1, i=20) is centrifugal... and (j=20, i=1) centripetal
    assert slices[2, NTU_CENTER, 1] > 0 and slices[1, 1, NTU_CENTER] > 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants(variant: str) -> None:
    net = STGCN(3, 60, variant)
    assert [b.tcn.stride[0] for b in net.blocks] == [s for _, _, s in VARIANTS[variant]]
    x = torch.randn(2, 3, 16, 25, 2)
    logits, feats = net(x, return_features=True)
    assert logits.shape == (2, 60)
    assert feats[-1].shape[0] == 4 and feats[-1].shape[1] == VARIANTS[variant][-1][1]


def test_custom_channels_and_site_factory() -> None:
    calls = []

    def factory(block: int, site: int, channels: int) -> nn.Module:
        calls.append((block, site, channels))
        return nn.Identity()

    net = STGCN(3, 5, "custom", channels=[[3, 4, 1], [4, 8, 2]], act_factory=factory)
    assert calls == [(0, 0, 4), (0, 1, 4), (1, 0, 8), (1, 1, 8)]
    assert net(torch.randn(1, 3, 8, 25, 2)).shape == (1, 5)


def test_graph_conv_matches_the_einsum_definition() -> None:
    torch.manual_seed(0)
    net = STGCN(3, 4, "custom", channels=[[3, 6, 1]])
    block = net.blocks[0]
    x = torch.randn(2, 3, 5, 25)
    out = block.graph_conv(x)
    w = block.gcn.weight.view(3, 6, 3)  # (K, C_out, C_in)
    b = block.gcn.bias.view(3, 6)
    adj = block.adjacency * block.edge_importance
    expected = sum(
        torch.einsum("oc,nctv,vw->notw", w[k], x, adj[k])
        + torch.einsum("o,vw->ow", b[k], adj[k])[None, :, None, :]
        for k in range(3)
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "stgcn_9"}, "variant=stgcn_9"),
        ({"variant": "custom"}, "channels"),
        ({"in_channels": 2}, "takes 3 channels"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"in_channels": 3, "num_classes": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        STGCN(**args)
