"""Runs a strategy's graph of operations over one problem and records everything.

A graph is a list of steps, as YAML or Python lists of dicts:

- ``{op: <name>, <param>: ...}``: an operation of :data:`OPERATIONS` (``generate``, ``score``,
  ``vote``, ``aggregate``, ``improve``, ``validate``, ``keep_best_n``, ``keep_valid``,
  ``ground_truth``, ``got``) applied to the previous step's thoughts;
- ``id: <name>`` names a step's output, and ``inputs: [<name>, ...]`` feeds a step the
  concatenated outputs of named steps instead of the previous one (``root`` is the problem),
  which makes the list a DAG (e.g. aggregate two branches);
- ``{repeat: <times>, ops: [...]}`` runs a sub-list that many times (ToT's steps).

The controller counts requests against ``max_calls`` (a request past it stops the graph; the
answers made so far still count), and records the thought graph, every prompt and reply, the
tokens (the client's usage over the problem; exact when problems run one at a time) and time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from effml.errors import ConfigError
from llm.base import LLMClient, LLMRequestError
from llm.reasoning.adapters import Adapter
from llm.reasoning.got import GraphOfThought
from llm.reasoning.operations import OPERATIONS, BudgetExhausted, Context, Operation, Thought

ALL_OPERATIONS: dict[str, type[Operation]] = {**OPERATIONS, GraphOfThought.name: GraphOfThought}


def build_operation(step: Mapping[str, Any], where: str) -> Operation:
    """The operation of one step (``{op: name, **params}``); ConfigError names a bad step."""
    params = {k: v for k, v in step.items() if k not in ("op", "id", "inputs")}
    name = step.get("op")
    if name not in ALL_OPERATIONS:
        raise ConfigError(
            f"{where}.op", name, f"choose one of {sorted(ALL_OPERATIONS)}", example="generate"
        )
    try:
        return ALL_OPERATIONS[name](**params)
    except TypeError as err:
        raise ConfigError(
            where,
            dict(step),
            f"has a parameter {name} does not take ({err})",
            fix=f"see llm.reasoning.operations.{ALL_OPERATIONS[name].__name__}",
        ) from None


def check_graph(graph: Sequence[Mapping[str, Any]], task: str, where: str = "graph") -> None:
    """Builds every step once (so bad names and parameters fail before any request)."""
    if not isinstance(graph, Sequence) or isinstance(graph, str) or not graph:
        raise ConfigError(
            where,
            graph,
            "must be a non-empty list of steps",
            example="[{op: generate, prompt: io, k: 1}]",
        )
    ids = {"root"}
    for i, step in enumerate(graph):
        here = f"{where}[{i}]"
        if not isinstance(step, Mapping):
            raise ConfigError(here, step, "must be a mapping like {op: generate, prompt: io}")
        if "repeat" in step:
            times = step["repeat"]
            if isinstance(times, bool) or not isinstance(times, int) or times < 1:
                raise ConfigError(f"{here}.repeat", times, "must be an integer >= 1", example=3)
            check_graph(step.get("ops"), task, f"{here}.ops")
            continue
        for name in step.get("inputs") or []:
            if name not in ids:
                raise ConfigError(
                    f"{here}.inputs",
                    list(step["inputs"]),
                    f"{name!r} names no earlier step",
                    fix=f"known: {sorted(ids)}",
                )
        operation = build_operation(step, here)
        if isinstance(operation, GraphOfThought):
            try:
                operation.check_task(task)
            except ConfigError as err:
                raise err.with_prefix(f"{here}.") from None
        if step.get("id"):
            ids.add(step["id"])


def run_graph(
    graph: Sequence[Mapping[str, Any]],
    thoughts: list[Thought],
    ctx: Context,
    outputs: dict[str, list[Thought]] | None = None,
) -> list[Thought]:
    """The thoughts left after running ``graph`` from ``thoughts``."""
    outputs = outputs if outputs is not None else {"root": list(thoughts)}
    for i, step in enumerate(graph):
        if "repeat" in step:
            for _ in range(step["repeat"]):
                thoughts = run_graph(step["ops"], thoughts, ctx, outputs)
            continue
        if step.get("inputs"):
            thoughts = [t for name in step["inputs"] for t in outputs[name]]
        thoughts = build_operation(step, f"graph[{i}]")(thoughts, ctx)
        if step.get("id"):
            outputs[step["id"]] = thoughts
    return thoughts


def solve(
    adapter: Adapter,
    graph: Sequence[Mapping[str, Any]],
    client: LLMClient,
    max_calls: int,
    temperature: float = 0.7,
    max_tokens: int = 128,
) -> dict:
    """One problem through the strategy's graph.

    Returns:
        the record: ``problem``, ``answer`` (the first answer left, or the best-scored answer
        made when the graph stopped early), ``correct`` and ``reason`` (the benchmark's
        checker), ``any_correct`` (any answer left), ``calls``, ``prompt_tokens``,
        ``completion_tokens``, ``wall_s``, ``stopped`` (why the graph stopped early),
        ``error`` (a request that failed), ``exchanges`` (every prompt and reply) and
        ``graph`` (the thought graph).
    """
    ctx = Context(client, adapter, max_calls, temperature, max_tokens, key=adapter.problem_id)
    state, text = adapter.root()
    root = ctx.graph.add(state, text, "root", [], "input")
    before = client.usage.as_dict()
    started = time.perf_counter()
    frontier, stopped, error = [root], None, None
    try:
        frontier = run_graph(graph, [root], ctx)
    except BudgetExhausted as err:
        stopped = str(err)
    except LLMRequestError as err:
        error = f"{type(err).__name__}: {err}"
    answers = [t for t in frontier if adapter.answer(t) is not None]
    if stopped or error:
        made = [t for t in ctx.graph.thoughts.values() if adapter.answer(t) is not None]
        answers = answers or sorted(made, key=lambda t: -(t.score or 0.0))
    for thought in answers:
        thought.solved = adapter.ground_truth(adapter.answer(thought)).correct
    verdict = adapter.ground_truth(adapter.answer(answers[0])) if answers else None
    after = client.usage.as_dict()
    return {
        "problem": adapter.problem_id,
        "task": adapter.task,
        "text": adapter.problem_text,
        "answer": adapter.answer(answers[0]) if answers else None,
        "correct": bool(verdict and verdict.correct),
        "reason": verdict.reason if verdict else "no answer",
        "any_correct": any(t.solved for t in answers),
        "calls": ctx.calls,
        "prompt_tokens": after["prompt_tokens"] - before["prompt_tokens"],
        "completion_tokens": after["completion_tokens"] - before["completion_tokens"],
        "wall_s": time.perf_counter() - started,
        "stopped": stopped,
        "error": error,
        "exchanges": ctx.exchanges,
        "graph": ctx.graph.as_dict(),
    }
