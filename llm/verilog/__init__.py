"""The Verilog harness: benchmark loaders (RTLLM arXiv:2308.05345, VerilogEval
arXiv:2309.07544), code extraction from replies, Icarus Verilog simulation with forged-pass
detection, pass@k scoring, the reference/replay answer clients, and PPA with open tools.

    problems = load_benchmark("rtllm_v1.1")              # $DATA_DIR/verilog/rtllm-v1.1
    ex = extract_verilog(reply, problems[0].top_module, problems[0].module_header)
    result = simulate(problems[0], ex.code, timeout_s=30)  # SimResult(compiled, passed, ...)
"""

from llm.verilog.benchmarks import Problem, load_benchmark, reference_answer
from llm.verilog.extract import Extraction, extract_verilog
from llm.verilog.scoring import aggregate, pass_at_k
from llm.verilog.sim import SimResult, simulate
from llm.verilog.tools import find_tool, tool_versions

__all__ = [
    "Extraction",
    "Problem",
    "SimResult",
    "aggregate",
    "extract_verilog",
    "find_tool",
    "load_benchmark",
    "pass_at_k",
    "reference_answer",
    "simulate",
    "tool_versions",
]
