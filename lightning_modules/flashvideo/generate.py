"""Token generation with each decoder: RetNet (chunkwise prompt, then recurrent steps), the
causal transformer (with or without a KV cache) and MaskGIT-style iterative parallel decoding.

Every generator takes a prompt (B, P) and returns (B, P + num_new) tokens. ``forced`` maps
absolute positions to tokens that are written instead of sampled (FlashVideo's serial-number
tokens at frame starts, copied tokens in interpolation); ``allowed`` (V,) bool restricts what
may be sampled (e.g. visual codes only).
"""

from __future__ import annotations

import math

import torch

from .layers import check_context
from .retnet import RetNetDecoder
from .transformer import TransformerDecoder


def sample(
    logits: torch.Tensor,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """logits (B, V) → tokens (B,): argmax at temperature 0, else softmax(logits/T) sampling."""
    if allowed is not None:
        logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


def _next(logits, position, forced, temperature, generator, allowed):
    if forced and position in forced:
        return torch.full(
            logits.shape[:1], forced[position], dtype=torch.long, device=logits.device
        )
    return sample(logits, temperature, generator, allowed)


@torch.no_grad()
def generate_retnet(
    model: RetNetDecoder,
    prompt: torch.Tensor,
    num_new: int,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    forced: dict[int, int] | None = None,
    allowed: torch.Tensor | None = None,
    backend: str | None = None,
    chunk_size: int = 64,
    min_chunk: int = 2,
) -> torch.Tensor:
    """Chunkwise form over the prompt, then one recurrent step per new token (O(1) each); a run
    of ``min_chunk`` (≥ 2) or more forced tokens goes through the chunkwise form in one pass
    (measured faster than steps from runs of 2 on in interpolation; shorter runs take steps)."""
    check_context(prompt.shape[1] + num_new, model.max_len, "generate_retnet")
    logits, states = model.prefill(prompt, backend=backend, chunk_size=chunk_size)
    tokens = [prompt]
    last = logits[:, -1]
    start, end = prompt.shape[1], prompt.shape[1] + num_new
    pos = start
    while pos < end:
        run = _forced_run(forced, pos, end)
        if len(run) >= max(min_chunk, 2):  # known tokens: one chunkwise pass
            block = prompt.new_tensor(run).expand(prompt.shape[0], -1)
            tokens.append(block)
            if pos + len(run) < end:
                last, states = model.extend(block, states, pos, backend, chunk_size)
            pos += len(run)
            continue
        token = _next(last, pos, forced, temperature, generator, allowed)
        tokens.append(token[:, None])
        if pos + 1 < end:
            last, states = model.step(token, states, pos)
        pos += 1
    return torch.cat(tokens, dim=1)


def _forced_run(forced: dict[int, int] | None, pos: int, end: int) -> list[int]:
    """The forced tokens at pos, pos+1, … up to the first free position (or ``end``)."""
    run = []
    while forced and pos + len(run) < end and pos + len(run) in forced:
        run.append(forced[pos + len(run)])
    return run


@torch.no_grad()
def generate_transformer(
    model: TransformerDecoder,
    prompt: torch.Tensor,
    num_new: int,
    use_cache: bool = True,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    forced: dict[int, int] | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """Autoregressive decoding; without a cache every step re-runs the whole prefix."""
    check_context(prompt.shape[1] + num_new, model.max_len, "generate_transformer")
    cache = model.new_cache(prompt.shape[0]) if use_cache else None
    seq = prompt
    logits = model(prompt, cache)[:, -1]
    for i in range(num_new):
        token = _next(logits, seq.shape[1], forced, temperature, generator, allowed)
        seq = torch.cat([seq, token[:, None]], dim=1)
        if i + 1 < num_new:
            logits = model(token[:, None], cache)[:, -1] if use_cache else model(seq)[:, -1]
    return seq


@torch.no_grad()
def generate_maskgit(
    model: TransformerDecoder,
    prompt: torch.Tensor,
    num_new: int,
    mask_token: int,
    iterations: int = 8,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    forced: dict[int, int] | None = None,
    allowed: torch.Tensor | None = None,
) -> torch.Tensor:
    """MaskGIT decoding (arXiv 2202.04200): start from all-[MASK], predict every masked token
    in parallel each iteration and keep the most confident, so that cos(π/2·t/T) of them stay
    masked after iteration t (its cosine schedule); ``iterations`` full passes in all."""
    if model.causal:
        raise ValueError("generate_maskgit needs TransformerDecoder(causal=False)")
    if iterations < 1:
        raise ValueError(f"iterations={iterations}: pass at least one decoding iteration")
    check_context(prompt.shape[1] + num_new, model.max_len, "generate_maskgit")
    b, p = prompt.shape
    seq = torch.cat([prompt, prompt.new_full((b, num_new), mask_token)], dim=1)
    masked = torch.ones(b, num_new, dtype=torch.bool, device=prompt.device)
    for pos, tok in (forced or {}).items():
        if p <= pos < p + num_new:
            seq[:, pos] = tok
            masked[:, pos - p] = False
    for t in range(iterations):
        logits = model(seq)[:, p:]  # (B, N, V)
        if allowed is not None:
            logits = logits.masked_fill(~allowed.to(logits.device), float("-inf"))
        flat = logits.reshape(b * num_new, -1)
        tokens = sample(flat, temperature, generator).view(b, num_new)
        conf = torch.log_softmax(logits.float(), -1).gather(-1, tokens[..., None])[..., 0]
        conf = conf.masked_fill(~masked, float("inf"))
        keep_masked = math.floor(num_new * math.cos(math.pi / 2 * (t + 1) / iterations))
        order = conf.argsort(dim=1)  # least confident first
        still = torch.zeros_like(masked).scatter(1, order[:, :keep_masked], True) & masked
        fill = masked & ~still
        seq[:, p:] = torch.where(fill, tokens, seq[:, p:])
        masked = still
    return seq
