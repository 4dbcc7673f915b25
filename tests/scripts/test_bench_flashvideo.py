"""scripts/bench_flashvideo.py on tiny lengths: the JSON schema, the five models at every L,
ratios consistent with the raw numbers, a RetNet state that does not grow with L while the KV
cache does, the no-cache total left out above its limit, the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scripts.bench_flashvideo import MODELS, main
from tasks.bench import MANIFEST_KEY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_bench_writes_schema_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    tiny = (
        "--lengths 16,32 --d-model 16 --heads 2 --layers 1 --vocab 40 --prompt 4 "
        "--maskgit-iterations 2 --nocache-max-total 16 --rounds 1 --min-run-time 0.01"
    )
    main([*tiny.split(), "--json", str(out), "--plot", str(png)])
    result = json.loads(out.read_text())
    assert result["device"]["cpu_cores"] >= 1 and result[MANIFEST_KEY] == result["device"]
    rows = {(r["model"], r["L"]): r for r in result["results"]}
    assert set(rows) == {(m, n) for m in MODELS for n in (16, 32)}
    for r in result["results"]:
        assert set(r) == {"model", "L", "total_s", "per_token_ms", "peak_mem_mb", "state_mb"}
        assert r["per_token_ms"] > 0
        assert r["peak_mem_mb"] is None  # CPU
    assert rows[("transformer_nocache", 16)]["total_s"] > 0
    assert rows[("transformer_nocache", 32)]["total_s"] is None
    assert rows[("retnet_recurrent", 16)]["state_mb"] == rows[("retnet_recurrent", 32)]["state_mb"]
    kv16, kv32 = rows[("transformer_kvcache", 16)], rows[("transformer_kvcache", 32)]
    assert kv32["state_mb"] == pytest.approx(2 * kv16["state_mb"])
    for ratio in result["ratios"]:
        r, base = rows[(ratio["model"], ratio["L"])], rows[("retnet_recurrent", ratio["L"])]
        if r["total_s"] is not None:
            assert ratio["total_s_vs_retnet_recurrent"] == pytest.approx(
                r["total_s"] / base["total_s"]
            )
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_bench_rejects_bad_lengths() -> None:
    with pytest.raises(SystemExit):
        main(["--lengths", "8,x"])
    with pytest.raises(SystemExit):
        main(["--lengths", "8", "--prompt", "9"])
