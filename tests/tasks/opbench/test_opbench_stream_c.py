"""STREAM's C triad, the cross-check's independent reference: it computes a = b + s·c."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tasks.opbench.stream_c import stream_triad


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (apt-get install gcc)")
@pytest.mark.parametrize("threads", [1, 2])
def test_stream_triad_computes_the_triad(threads: int) -> None:
    triad = stream_triad(1001, threads, scalar=3.0)
    a, b, c = triad.arrays
    triad()
    # -march=native may fuse the multiply-add (one rounding instead of two)
    np.testing.assert_allclose(a, b + np.float32(3.0) * c, rtol=1e-5, atol=1e-6)


def test_no_compiler_gives_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert stream_triad(16, 1) is None
