"""Language-model clients behind one interface, and the pipelines built on them.

``build_client(cfg.llm)`` makes the configured client (``conf/llm/``): a local transformers
model (the default, the bundled SmolLM2-135M-Instruct GGUF), any OpenAI-compatible server,
or the archived/reference answer clients of ``llm.verilog``; wrapped in an on-disk response
cache. ``llm.concurrency.map_bounded`` runs problems in parallel with a progress bar.
"""

from llm.base import LLMClient, LLMError, LLMRequestError, Usage
from llm.factory import build_client

__all__ = ["LLMClient", "LLMError", "LLMRequestError", "Usage", "build_client"]
