"""Backend dispatch shared by every op (ops/dispatch.py): resolution, Triton checks, fallbacks."""

from __future__ import annotations

import logging

import pytest
import torch

import ops.dispatch as dispatch
from ops.dispatch import (
    BACKENDS,
    check_backend,
    check_triton_runnable,
    device_guard,
    resolve_backend,
    warn_fallback,
)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_resolve_backend_defaults_by_device_and_keeps_explicit_choices():
    x = torch.zeros(2)
    assert resolve_backend(None, x, op="maxk") == "cpu"
    for backend in BACKENDS:
        assert resolve_backend(backend, x, op="maxk") == backend
    assert check_backend(None, op="maxk") is None
    assert check_backend("cpu", op="maxk") == "cpu"


@requires_cuda
def test_resolve_backend_picks_triton_on_cuda():
    assert resolve_backend(None, torch.zeros(2, device="cuda"), op="maxk") == "triton"


def test_unknown_backend_names_the_op_and_the_choices():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match=r"^polyact: backend='cuda': choose one of \('ref"):
        resolve_backend("cuda", x, op="polyact")
    with pytest.raises(ValueError, match=r"revsnn: backend='triton': choose one of \('ref"):
        resolve_backend("triton", x, op="revsnn", allowed=("reference", "cpu"))
    with pytest.raises(ValueError, match=r"spmm: backend='gpu'.*or None \(by device\)"):
        check_backend("gpu", op="spmm")


def test_triton_needs_the_interpreter_on_cpu(monkeypatch):
    monkeypatch.setattr(dispatch, "TRITON_INTERPRET", False)
    with pytest.raises(RuntimeError, match=r"^maxk: .*set TRITON_INTERPRET=1.*backend='cpu'"):
        check_triton_runnable(torch.zeros(2), op="maxk")
    monkeypatch.setattr(dispatch, "TRITON_INTERPRET", True)
    check_triton_runnable(torch.zeros(2), op="maxk")


def test_triton_dtype_checks(monkeypatch):
    monkeypatch.setattr(dispatch, "TRITON_INTERPRET", True)
    fast = (torch.float32, torch.float64)
    with pytest.raises(TypeError, match="revsnn: the triton backend takes float32 or float64, "):
        check_triton_runnable(torch.zeros(2, dtype=torch.float16), op="revsnn", dtypes=fast)
    check_triton_runnable(torch.zeros(2, dtype=torch.float64), op="revsnn", dtypes=fast)
    with pytest.raises(TypeError, match="polyact: bfloat16 is wrong in the Triton interpreter"):
        check_triton_runnable(torch.zeros(2, dtype=torch.bfloat16), op="polyact")


def test_device_guard_is_a_no_op_on_cpu():
    with device_guard(torch.zeros(1)) as entered:
        assert entered is None


@requires_cuda
def test_device_guard_selects_the_tensors_gpu():
    x = torch.zeros(1, device=f"cuda:{torch.cuda.device_count() - 1}")
    with device_guard(x):
        assert torch.cuda.current_device() == x.device.index


def test_fallback_warning_is_logged_once_per_op_and_reason(caplog):
    warn_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger=dispatch.__name__):
        for _ in range(3):
            warn_fallback("maxk", "no compiler; using vectorised torch")
        warn_fallback("maxk", "EFFML_MAXK_NO_CPP=1")
        warn_fallback("spmm", "no compiler; using vectorised torch")
    messages = [r.getMessage() for r in caplog.records if r.name == dispatch.__name__]
    assert messages == [
        "maxk: no compiler; using vectorised torch",
        "maxk: EFFML_MAXK_NO_CPP=1",
        "spmm: no compiler; using vectorised torch",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
