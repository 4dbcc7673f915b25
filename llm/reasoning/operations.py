"""The operation vocabulary of the reasoning strategies, and the thought graph they build.

After spcl/graph-of-thoughts (Besta et al., arXiv:2308.09687): a strategy is a graph of
operations, each taking the current thoughts and returning new ones. Every thought and every
operation is recorded in a :class:`ThoughtGraph` (saved as JSON with the problem's record), and
every model request in :class:`Context` (prompt, replies, what was parsed). The task-specific
parts (prompt fields, parsing a reply into new states, exact checks) live in a task adapter
(:mod:`llm.reasoning.adapters`), so one vocabulary serves Game of 24, polynomials and sequences.

Operations (``OPERATIONS`` maps the config names to classes):

- ``generate`` (Generate): ``k`` samples of a prompt per thought, each reply parsed into child
  thoughts.
- ``score`` (Score, a.k.a. Value): a prompt sampled ``samples`` times per thought, each reply's
  label mapped to a number and summed (ToT's sure/likely/impossible -> 20/1/0.001).
- ``vote`` (Vote): all thoughts shown in one prompt sampled ``samples`` times; a thought's score
  is its votes.
- ``aggregate`` (Aggregate): all thoughts shown in one prompt; the reply is one new thought
  whose parents are all of them (an AND node).
- ``improve`` (Improve): each thought and the reason it was judged wrong, rewritten by the model.
- ``validate`` (Validate): an exact checker in code marks each thought valid or not (no model).
- ``keep_best_n`` (KeepBestN), ``keep_valid`` (KeepValid): selection, no model.
- ``ground_truth`` (GroundTruth): the benchmark's own checker marks answers solved; for scoring
  the record only, it never filters or reorders (a strategy that is guided by it is an oracle).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

from effml.errors import ConfigError
from llm.base import LLMClient
from llm.reasoning.prompts import parse_choice, render


class BudgetExhausted(Exception):
    """A request past the problem's ``max_calls``; the controller stops the graph there."""


@dataclasses.dataclass
class Thought:
    """A node of the thought graph.

    Attributes:
        id: unique within the problem.
        state: the task's state (JSON values; e.g. remaining numbers and steps for 24).
        text: what the thought says, as shown in prompts and drawings.
        kind: ``root``, ``thought``, ``answer``, ``condition`` or ``crossroad``.
        parents: ids of the thoughts it was derived from (all of them: an AND node).
        op: the operation that made it.
        score: the last Score/Vote result (None: not scored).
        valid: the last Validate result (None: not validated); ``reason`` says why.
        solved: the ground-truth verdict of an answer (None: not checked).
    """

    id: int
    state: dict
    text: str
    kind: str = "thought"
    parents: list[int] = dataclasses.field(default_factory=list)
    op: str = ""
    score: float | None = None
    valid: bool | None = None
    reason: str = ""
    solved: bool | None = None

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


class ThoughtGraph:
    """Every thought made for one problem and every operation run, in order."""

    def __init__(self) -> None:
        self.thoughts: dict[int, Thought] = {}
        self.operations: list[dict] = []

    def add(self, state: dict, text: str, kind: str, parents: list[int], op: str) -> Thought:
        """A new thought, recorded."""
        thought = Thought(len(self.thoughts), state, text, kind, list(parents), op)
        self.thoughts[thought.id] = thought
        return thought

    def record(self, name: str, params: dict, inputs: list[Thought], outputs: list[Thought]):
        """Notes that operation ``name`` turned ``inputs`` into ``outputs``."""
        self.operations.append(
            {
                "op": name,
                "params": params,
                "inputs": [t.id for t in inputs],
                "outputs": [t.id for t in outputs],
            }
        )

    def as_dict(self) -> dict:
        """``{"thoughts": [...], "operations": [...]}``, JSON-ready."""
        return {
            "thoughts": [t.as_dict() for t in self.thoughts.values()],
            "operations": self.operations,
        }


class Context:
    """What operations share for one problem: the client, the task adapter, the graph, the
    request log and the budget.

    Args:
        client: the language model.
        adapter: the task adapter of this problem.
        max_calls: most ``complete`` requests for this problem (one request may hold n samples).
        temperature: the sampling temperature of every request unless an operation sets its
            own (0: greedy).
        max_tokens: default completion length.
        key: the problem id, passed to the client.
    """

    def __init__(
        self,
        client: LLMClient,
        adapter: Any,
        max_calls: int,
        temperature: float = 0.7,
        max_tokens: int = 128,
        key: str | None = None,
    ) -> None:
        self.client = client
        self.adapter = adapter
        self.max_calls = max_calls
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.key = key
        self.graph = ThoughtGraph()
        self.exchanges: list[dict] = []

    @property
    def calls(self) -> int:
        """Requests made so far for this problem (answered by the model or the cache)."""
        return len(self.exchanges)

    def ask(
        self,
        op: str,
        prompt: str,
        fields: Mapping[str, str],
        n: int = 1,
        temperature: float | None = None,
        max_tokens: int | None = None,
    ) -> list[str]:
        """``n`` replies to prompt ``prompt`` of the task; logged in ``exchanges``.

        Raises:
            BudgetExhausted: ``max_calls`` requests were already made.
        """
        if self.calls >= self.max_calls:
            raise BudgetExhausted(f"max_calls={self.max_calls} reached")
        messages = render(self.adapter.task, prompt, **fields)
        temperature = self.temperature if temperature is None else temperature
        started = time.perf_counter()
        replies = self.client.complete(
            messages,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens or self.max_tokens,
            key=self.key,
        )
        self.exchanges.append(
            {
                "op": op,
                "prompt": prompt,
                "messages": messages,
                "n": n,
                "temperature": temperature,
                "replies": list(replies),
                "seconds": time.perf_counter() - started,
            }
        )
        return list(replies)


class Operation:
    """One step of a strategy: ``run(thoughts, ctx) -> thoughts``, recorded in the graph."""

    name = ""

    def __init__(self, **params: Any) -> None:
        self.params = params

    def __call__(self, thoughts: list[Thought], ctx: Context) -> list[Thought]:
        """Runs the operation and records its inputs and outputs (the thoughts it made so far
        when the budget stops it midway)."""
        made: list[Thought] = []
        result: list[Thought] | None = None
        try:
            result = self.run(thoughts, ctx, made)
        finally:
            ctx.graph.record(self.name, self.params, thoughts, made if result is None else result)
        return result

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        """The new frontier; thoughts this operation creates are appended to ``made``."""
        raise NotImplementedError


class Generate(Operation):
    """``k`` samples of ``prompt`` per thought; each reply parsed into child thoughts.

    Args:
        prompt: the task's prompt name (``io``, ``cot``, ``propose``, ``finish``).
        k: samples per thought (one request with n = k).
        max_tokens: completion length (the context's by default).
        temperature: sampling temperature (the context's by default; 0: greedy).
    """

    name = "generate"

    def __init__(
        self,
        prompt: str,
        k: int = 1,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> None:
        super().__init__(prompt=prompt, k=k, max_tokens=max_tokens, temperature=temperature)
        self.prompt, self.k, self.max_tokens, self.temperature = prompt, k, max_tokens, temperature

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        for thought in thoughts:
            replies = ctx.ask(
                self.name,
                self.prompt,
                ctx.adapter.fields(self.prompt, thought),
                self.k,
                self.temperature,
                self.max_tokens,
            )
            for reply in replies:
                for state, text, kind in ctx.adapter.children(self.prompt, thought, reply):
                    made.append(ctx.graph.add(state, text, kind, [thought.id], self.name))
        return list(made)


class Score(Operation):
    """ToT's value: ``samples`` replies per thought, each label mapped and summed.

    Thoughts with the same state share one request (ToT's value cache). Unparsed replies
    score 0.

    Args:
        prompt: the task's value prompt.
        samples: replies per thought.
        mapping: label -> score, e.g. ``{sure: 20, likely: 1, impossible: 0.001}``.
        max_tokens: completion length.
    """

    name = "score"

    def __init__(
        self,
        prompt: str = "value",
        samples: int = 3,
        mapping: Mapping[str, float] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        mapping = dict(mapping or {"sure": 20.0, "likely": 1.0, "impossible": 0.001})
        super().__init__(prompt=prompt, samples=samples, mapping=mapping, max_tokens=max_tokens)
        self.prompt, self.samples, self.mapping = prompt, samples, mapping
        self.max_tokens = max_tokens

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        cache: dict[str, float] = {}
        for thought in thoughts:
            fields = ctx.adapter.fields(self.prompt, thought)
            key = json.dumps(fields, sort_keys=True)
            if key not in cache:
                replies = ctx.ask(
                    self.name, self.prompt, fields, self.samples, max_tokens=self.max_tokens
                )
                cache[key] = value_of(replies, self.mapping, ctx.adapter.label)
            thought.score = cache[key]
        return list(thoughts)


def value_of(replies: list[str], mapping: Mapping[str, float], label: Any) -> float:
    """The summed score of value replies: ``sum(mapping[label(reply)])`` (0 when unparsed)."""
    return float(sum(mapping.get(label(reply) or "", 0.0) for reply in replies))


class Vote(Operation):
    """All thoughts in one prompt, ``samples`` votes; a thought's score is its vote count."""

    name = "vote"

    def __init__(self, samples: int = 5, max_tokens: int | None = 32) -> None:
        super().__init__(samples=samples, max_tokens=max_tokens)
        self.samples, self.max_tokens = samples, max_tokens

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        if len(thoughts) < 2:
            return list(thoughts)
        fields = ctx.adapter.list_fields(thoughts)
        replies = ctx.ask(self.name, "vote", fields, self.samples, max_tokens=self.max_tokens)
        votes = [0] * len(thoughts)
        for reply in replies:
            choice = parse_choice(reply, len(thoughts))
            if choice is not None:
                votes[choice] += 1
        for thought, count in zip(thoughts, votes, strict=True):
            thought.score = float(count)
        return list(thoughts)


class Aggregate(Operation):
    """All thoughts in one prompt; each reply becomes a thought whose parents are all of them."""

    name = "aggregate"

    def __init__(self, k: int = 1, max_tokens: int | None = None) -> None:
        super().__init__(k=k, max_tokens=max_tokens)
        self.k, self.max_tokens = k, max_tokens

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        if not thoughts:
            return []
        fields = ctx.adapter.list_fields(thoughts)
        replies = ctx.ask(self.name, "aggregate", fields, self.k, max_tokens=self.max_tokens)
        root = thoughts[0]
        for reply in replies:
            for state, text, kind in ctx.adapter.children("aggregate", root, reply):
                made.append(ctx.graph.add(state, text, kind, [t.id for t in thoughts], self.name))
        return list(made)


class Improve(Operation):
    """Each thought rewritten by the model, told why it was judged wrong (``reason``)."""

    name = "improve"

    def __init__(self, max_tokens: int | None = None, only_invalid: bool = True) -> None:
        super().__init__(max_tokens=max_tokens, only_invalid=only_invalid)
        self.max_tokens, self.only_invalid = max_tokens, only_invalid

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        out = []
        for thought in thoughts:
            if self.only_invalid and thought.valid is not False:
                out.append(thought)
                continue
            fields = ctx.adapter.fields("improve", thought)
            reply = ctx.ask(self.name, "improve", fields, 1, max_tokens=self.max_tokens)[0]
            children = [
                ctx.graph.add(state, text, kind, [thought.id], self.name)
                for state, text, kind in ctx.adapter.children("improve", thought, reply)
            ]
            made.extend(children)
            out.extend(children or [thought])
        return out


class Validate(Operation):
    """Marks each thought valid or not with an exact checker in code (no model).

    Args:
        checker: ``step`` (Game of 24: the exact arithmetic of a partial solution's steps;
            other tasks have no steps, so everything passes) or ``oracle`` (the benchmark's own
            checker applied to answers: a strategy that uses it is guided by the ground truth,
            an oracle, and must be reported as one).
    """

    name = "validate"

    def __init__(self, checker: str = "step") -> None:
        if checker not in ("step", "oracle"):
            raise ConfigError("checker", checker, "choose step or oracle", example="step")
        super().__init__(checker=checker)
        self.checker = checker

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        for thought in thoughts:
            thought.valid, thought.reason = ctx.adapter.check(self.checker, thought)
        return list(thoughts)


class KeepBestN(Operation):
    """The ``n`` highest-scored thoughts (ties keep their order; unscored count as 0)."""

    name = "keep_best_n"

    def __init__(self, n: int = 5) -> None:
        super().__init__(n=n)
        self.n = n

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        return keep_best(thoughts, self.n)


def keep_best(thoughts: list[Thought], n: int) -> list[Thought]:
    """The ``n`` best by score, a stable sort (ToT's greedy selection)."""
    return sorted(thoughts, key=lambda t: -(t.score or 0.0))[:n]


class KeepValid(Operation):
    """The thoughts a Validate marked valid."""

    name = "keep_valid"

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        return [t for t in thoughts if t.valid]


class GroundTruth(Operation):
    """Marks each answer solved or not with the benchmark's checker; never filters."""

    name = "ground_truth"

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        for thought in thoughts:
            answer = ctx.adapter.answer(thought)
            if answer is not None:
                thought.solved = ctx.adapter.ground_truth(answer).correct
        return list(thoughts)


OPERATIONS: dict[str, type[Operation]] = {
    cls.name: cls
    for cls in (
        Generate,
        Score,
        Vote,
        Aggregate,
        Improve,
        Validate,
        KeepBestN,
        KeepValid,
        GroundTruth,
    )
}
