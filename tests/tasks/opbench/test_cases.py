"""Operator-suite cases: FLOP and byte counts against hand-computed values, the layer tables,
every family built and run once at tiny sizes, and the skips (dtype, memory)."""

from __future__ import annotations

import gzip

import pytest
import torch

from effml.errors import ConfigError
from tasks.opbench import cases as cases_mod
from tasks.opbench.cases import CaseSkipped
from tasks.opbench.counts import (
    attention_bytes,
    attention_flops,
    conv2d_bytes,
    conv2d_flops,
    conv2d_out,
    copy_bytes,
    gemm_bytes,
    gemm_flops,
    spmm_bytes,
    spmm_flops,
    triad_bytes,
    triad_flops,
)
from tasks.opbench.families import FAMILIES, gemm_cases
from tasks.opbench.shapes import CONV_NETS, RESNET18, ConvShape

CPU = torch.device("cpu")
CONV1 = ConvShape(3, 64, 224, 224, 7, 7, 2, 3)  # ResNet-18 conv1
LAYER1 = ConvShape(64, 64, 56, 56, 3, 3, 1, 1)  # ResNet-18 layer1 3×3


def test_gemm_counts() -> None:
    assert gemm_flops(256, 256, 256) == 33_554_432
    assert gemm_bytes(256, 256, 256, 4) == 786_432  # 3 · 65,536 · 4
    assert gemm_flops(2, 4096, 11008) == 180_355_072  # 7B mlp_down at 2 tokens
    assert gemm_bytes(2, 4096, 11008, 2) == 90_237_952  # (22,016 + 45,088,768 + 8,192) · 2


def test_conv_counts() -> None:
    assert conv2d_out(224, 7, 2, 3) == 112
    # 2 · 1 · 64 · 112 · 112 · 3 · 7 · 7
    assert conv2d_flops(1, CONV1) == 236_027_904
    assert conv2d_flops(1, CONV1, "backward") == 472_055_808
    # x 150,528 + w 9,408 + y 802,816 elements, fp32
    assert conv2d_bytes(1, CONV1, 4) == 3_851_008
    assert conv2d_bytes(1, CONV1, 4, "backward") == 4_490_752  # (2x + 2w + y) · 4
    # 2 · 32 · 64 · 56 · 56 · 64 · 3 · 3
    assert conv2d_flops(32, LAYER1) == 7_398_752_256


def test_attention_counts() -> None:
    assert attention_flops(1, 32, 1024, 128, causal=False) == 17_179_869_184
    assert attention_flops(1, 32, 1024, 128, causal=True) == 8_589_934_592  # half
    assert attention_bytes(1, 32, 1024, 128, 2) == 33_554_432  # Q, K, V, O in fp16


def test_spmm_and_stream_counts() -> None:
    assert spmm_flops(10, 32) == 640
    # CSR (5 row pointers + 10 columns) · 8 + 10 values · 4 + (4 + 4) rows · 32 · 4
    assert spmm_bytes(10, 4, 4, 32, 4, 8) == 1184
    assert copy_bytes(1000, 4) == 8000
    assert triad_bytes(1000, 8) == 24000
    assert triad_flops(1000) == 2000


def test_case_intensity() -> None:
    (case,) = gemm_cases({"dtypes": ["fp32"], "square": [256], "llm_tokens": []})
    assert case.flops == 33_554_432 and case.bytes == 786_432
    assert case.intensity == pytest.approx(33_554_432 / 786_432)


def test_shape_tables() -> None:
    assert {net: len(shapes) for net, shapes in CONV_NETS.items()} == {
        "resnet18": 11,
        "resnet50": 23,
        "vgg16": 9,
    }
    assert all(len(set(shapes)) == len(shapes) for shapes in CONV_NETS.values())
    assert RESNET18[0] == CONV1


@pytest.mark.parametrize("net", sorted(CONV_NETS))
def test_shape_tables_match_torchvision(net: str) -> None:
    models = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        model = getattr(models, net)()
    seen = []

    def record(module, inputs, _output) -> None:
        _, c, h, w = inputs[0].shape
        seen.append(
            ConvShape(c, module.out_channels, h, w, *module.kernel_size, module.stride[0],
                      module.padding[0])
        )  # fmt: skip

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(record)
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert set(seen) == set(CONV_NETS[net])


def test_llm_gemm_shapes() -> None:
    cases = gemm_cases({"dtypes": ["bf16"], "square": [], "llm_tokens": [1, 4096]})
    assert sorted((c.params["m"], c.params["n"], c.params["k"]) for c in cases) == [
        (1, 4096, 4096),
        (1, 4096, 11008),
        (1, 11008, 4096),
        (4096, 4096, 4096),
        (4096, 4096, 11008),
        (4096, 11008, 4096),
    ]


def _edge_file(tmp_path):
    path = tmp_path / "tiny.edges.gz"
    with gzip.open(path, "wt") as f:
        f.write("# nodes: 6\n0 1\n1 2\n2 3\n3 4\n4 5\n5 0\n0 3\n")
    return str(path)


def _tiny_configs(tmp_path) -> dict:
    return {
        "gemm": {"square": [8], "llm_tokens": []},
        "conv": {"nets": [], "layers": [[3, 4, 8, 8, 3, 3, 2, 1]], "batches": [2]},
        "spmm": {"graphs": [_edge_file(tmp_path)], "data_dir": str(tmp_path), "widths": [4]},
        "attention": {"seq_lens": [16], "head_dims": [8], "heads": 2, "batch": 1},
        "bandwidth": {"sizes": [64], "flush_bytes": 4096},
    }


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_builds_and_runs_on_cpu(family: str, tmp_path) -> None:
    cases = FAMILIES[family](_tiny_configs(tmp_path)[family])
    ran = 0
    for case in cases:
        assert case.flops >= 0 and case.bytes > 0
        try:
            fn = case.build(CPU)
        except CaseSkipped as skip:
            assert skip.reason
            continue
        assert fn() is not None or family == "bandwidth"
        ran += 1
    assert ran > 0


def test_spmm_counts_read_the_graph(tmp_path) -> None:
    cfg = _tiny_configs(tmp_path)["spmm"] | {"backends": ["torch_sparse"]}
    (case,) = FAMILIES["spmm"](cfg)
    # 7 edges both ways = 14 nonzeros, 6 nodes, width 4, fp32
    assert case.params["nnz"] == 14 and case.flops == 2 * 14 * 4
    assert case.bytes == (7 + 14) * 8 + 14 * 4 + 12 * 4 * 4


def test_tf32_on_cpu_is_skipped() -> None:
    (case,) = gemm_cases({"dtypes": ["tf32"], "square": [8], "llm_tokens": []})
    with pytest.raises(CaseSkipped, match="tf32 on cpu"):
        case.build(CPU)


def test_case_that_does_not_fit_is_skipped(monkeypatch) -> None:
    monkeypatch.setattr(cases_mod, "free_memory", lambda device: 1000)
    (case,) = gemm_cases({"dtypes": ["fp32"], "square": [256], "llm_tokens": []})
    with pytest.raises(CaseSkipped, match="GiB free"):
        case.build(CPU)


@pytest.mark.parametrize(
    ("family", "cfg", "match"),
    [
        ("gemm", {"dtypes": ["fp8"]}, "gemm.dtypes"),
        ("conv", {"nets": ["alexnet"]}, "conv.nets"),
        ("conv", {"layers": [[3, 64, 224]]}, "conv.layers"),
        ("attention", {"backends": ["xformers"]}, "attention.backends"),
        ("bandwidth", {"ops": ["scale"]}, "bandwidth.ops"),
        ("bandwidth", {"sizes": [0]}, "bandwidth.sizes"),
        ("spmm", {"graphs": ["cora"]}, "spmm.data_dir"),
    ],
)
def test_bad_config_names_the_key(family: str, cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FAMILIES[family](cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_paths() -> None:
    cuda = torch.device("cuda")
    for dtype in ("fp32", "tf32", "fp16", "bf16"):
        (case,) = gemm_cases({"dtypes": [dtype], "square": [64], "llm_tokens": []})
        try:
            fn = case.build(cuda)
        except CaseSkipped as skip:
            assert dtype in skip.reason
            continue
        assert fn().shape == (64, 64)
    torch.cuda.synchronize()
