"""Graph of Thought for logical reasoning (Lei et al., arXiv:2308.08614, Sec. 3).

The thought graph holds *condition* nodes (given facts and verified intermediate results) and
*AND-crossroad* nodes: a new fact derived from all of its input conditions. Each round the
model proposes crossroads from the current conditions; a *checker* of chained inspectors
examines each candidate in turn, and the candidate is accepted only when every inspector
agrees (:func:`accepted`; the chain stops at the first disagreement, so later inspectors cost
nothing). An accepted result joins the conditions, and reasoning repeats until the target is
reached, the rounds run out, or the problem's request budget is spent.

Inspectors (``inspectors:`` in the strategy config, applied in the order given):

- ``exact``: code, not a model. Game of 24: the step's arithmetic, exactly (Fractions).
  Polynomial: exact synthetic division of the current quotient by ``(x - r)``. Sequence: the
  closed form against the first ``terms`` terms computed exactly from the recurrence.
- ``judge``: the model, sampled ``judge_samples`` times (Game of 24 only): "can the numbers left
  after this step still make 24?"; agrees when more than half the replies say one of
  ``judge_accept`` (sure / likely).
- ``rederive``: the model recomputes the step (24: ``a op b``; polynomial: ``p(r)``, which must
  be 0; sequence: the formula at ``n = rederive_n``); agrees when its number equals the exact
  one.

Departures: the paper does not give its prompts or how it backtracks. Here a Game-of-24 state
with ``patience`` rounds without an accepted crossroad (or a single number that is not 24) is
abandoned and its last step rejected (depth-first backtracking); polynomial and sequence keep
a list of rejected guesses that is shown to the model in the next round. Every crossroad
prompt names its attempt number, so a retry is a new request (identical requests get identical
answers from the response cache and from the local model's request-seeded sampling).
"""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from math import lcm

from effml.errors import ConfigError
from llm.reasoning.adapters import apply_op, show
from llm.reasoning.arith import ExpressionError, evaluate, format_fraction, parse_expression
from llm.reasoning.operations import Context, Operation, Thought
from llm.reasoning.polynomial import format_polynomial
from llm.reasoning.prompts import first_number, parse_root_guesses, parse_steps, parse_value
from llm.reasoning.sequence import extract_closed_form

INSPECTORS = {
    "game24": ("exact", "judge", "rederive"),
    "polynomial": ("exact", "rederive"),
    "sequence": ("exact", "rederive"),
}


def accepted(verdicts: list[bool]) -> bool:
    """The checker's rule: accept only when there are verdicts and every one agrees."""
    return bool(verdicts) and all(verdicts)


class GraphOfThought(Operation):
    """The condition / crossroad loop over one problem (see the module docstring).

    Args:
        inspectors: inspector names, in order (a subset of ``INSPECTORS[task]``).
        max_rounds: most crossroad requests.
        candidates: most candidates inspected per round.
        judge_samples: samples of the ``judge`` inspector.
        judge_accept: labels that count as agreement.
        patience: Game of 24: rounds without an accepted crossroad before backtracking.
        terms: sequence: terms computed exactly (the conditions the exact inspector uses).
        rederive_n: sequence: the ``n`` the model recomputes the formula at.
        max_tokens: completion length of crossroad requests (inspectors use 16).
    """

    name = "got"

    def __init__(
        self,
        inspectors: tuple[str, ...] | list[str] = ("exact", "judge", "rederive"),
        max_rounds: int = 12,
        candidates: int = 3,
        judge_samples: int = 3,
        judge_accept: tuple[str, ...] | list[str] = ("sure", "likely"),
        patience: int = 2,
        terms: int = 8,
        rederive_n: int = 4,
        max_tokens: int | None = None,
    ) -> None:
        super().__init__(
            inspectors=list(inspectors),
            max_rounds=max_rounds,
            candidates=candidates,
            judge_samples=judge_samples,
            judge_accept=list(judge_accept),
            patience=patience,
            terms=terms,
            rederive_n=rederive_n,
            max_tokens=max_tokens,
        )
        self.inspectors = list(inspectors)
        self.max_rounds, self.candidates, self.patience = max_rounds, candidates, patience
        self.judge_samples, self.judge_accept = judge_samples, tuple(judge_accept)
        self.terms, self.rederive_n, self.max_tokens = terms, rederive_n, max_tokens

    def check_task(self, task: str) -> None:
        """Raises ConfigError when an inspector does not exist for ``task``."""
        for name in self.inspectors:
            if name not in INSPECTORS[task]:
                raise ConfigError(
                    "inspectors",
                    self.inspectors,
                    f"{name!r} is not an inspector of {task}",
                    fix=f"choose from {list(INSPECTORS[task])}",
                )

    def run(self, thoughts: list[Thought], ctx: Context, made: list[Thought]) -> list[Thought]:
        self.check_task(ctx.adapter.task)
        loop = {"game24": _Game24, "polynomial": _Polynomial, "sequence": _Sequence}
        return loop[ctx.adapter.task](self, ctx, made, thoughts).run()

    def inspect(self, checks: list[tuple[str, object]], node: Thought) -> bool:
        """Runs the inspectors in order (``checks``: name -> zero-argument callable giving a
        bool), stopping at the first disagreement; records each verdict on ``node``."""
        verdicts = []
        for name in self.inspectors:
            verdict = bool(dict(checks)[name]())
            node.state.setdefault("inspectors", {})[name] = verdict
            verdicts.append(verdict)
            if not verdict:
                break
        node.valid = accepted(verdicts) and len(verdicts) == len(self.inspectors)
        return node.valid


class _Loop:
    """What the three task loops share."""

    def __init__(
        self, op: GraphOfThought, ctx: Context, made: list[Thought], inputs: list[Thought]
    ) -> None:
        self.op, self.ctx, self.made = op, ctx, made
        self.root = inputs[0] if inputs else None

    def add(self, state: dict, text: str, kind: str, parents: list[int]) -> Thought:
        thought = self.ctx.graph.add(state, text, kind, parents, "got")
        self.made.append(thought)
        return thought

    def ask(self, prompt: str, fields: dict, n: int = 1, max_tokens: int | None = 16) -> list:
        return self.ctx.ask("got", prompt, fields, n, max_tokens=max_tokens)

    def rederived(self, prompt: str, fields: dict, expected: Fraction) -> bool:
        """The model's recomputation equals ``expected`` exactly."""
        return first_number(self.ask(prompt, fields, 1)[0]) == expected


class _Game24(_Loop):
    """Conditions: the numbers (given or derived, each with its expression); a crossroad joins
    two of them with an operation."""

    def run(self) -> list[Thought]:
        parents = [self.root.id] if self.root else []
        active = [
            self.add({"value": str(n), "expr": str(n)}, str(n), "condition", parents)
            for n in self.ctx.adapter.problem.numbers
        ]
        stack: list[tuple[list[Thought], str]] = []  # (conditions before, step taken)
        rejected: dict[str, set[str]] = {}
        misses: Counter[str] = Counter()
        for _ in range(self.op.max_rounds):
            values = [Fraction(t.state["value"]) for t in active]
            key = show(sorted(values))
            if len(active) == 1 and values[0] == 24:
                expr = active[0].state["expr"]
                return [self.add({"answer": expr}, expr, "answer", [active[0].id])]
            if len(active) == 1 or misses[key] >= self.op.patience:
                if not stack:
                    return []
                active, step = stack.pop()
                rejected.setdefault(
                    show(sorted(Fraction(t.state["value"]) for t in active)), set()
                ).add(step)
                continue
            new = self.round(active, rejected.setdefault(key, set()), misses[key] + 1)
            if new is None:
                misses[key] += 1
                continue
            fact, step = new
            inputs = set(self.ctx.graph.thoughts[fact.parents[0]].parents)
            stack.append((active, step))
            active = [t for t in active if t.id not in inputs] + [fact]
        return []

    def round(
        self, active: list[Thought], rejected: set[str], attempt: int
    ) -> tuple[Thought, str] | None:
        """One crossroad request and its inspection; the accepted fact and its step, or None.
        ``attempt`` counts the requests on this state (so a retry is a new request)."""
        fields = {
            "numbers": show([Fraction(t.state["value"]) for t in active]),
            "rejected": "; ".join(sorted(rejected)) or "none",
            "attempt": str(attempt),
        }
        reply = self.ask("crossroad", fields, 1, self.op.max_tokens)[0]
        tried = 0
        for step in parse_steps(reply):
            a, b, c, op = step["left"], step["right"], step["result"], step["op"]
            text = f"{format_fraction(a)} {op} {format_fraction(b)} = {format_fraction(c)}"
            if text in rejected or tried >= self.op.candidates:
                continue
            tried += 1
            first = next((t for t in active if Fraction(t.state["value"]) == a), None)
            second = next(
                (t for t in active if Fraction(t.state["value"]) == b and t is not first), None
            )
            if first is None or second is None:  # not an AND of current conditions
                rejected.add(text)
                continue
            node = self.add({"step": text}, text, "crossroad", [first.id, second.id])
            after = [Fraction(t.state["value"]) for t in active if t not in (first, second)]
            checks = [
                ("exact", lambda a=a, b=b, c=c, op=op: apply_op(op, a, b) == c),
                ("judge", lambda after=after, c=c: self.judged(after + [c])),
                (
                    "rederive",
                    lambda a=a, b=b, c=c, op=op: self.rederived(
                        "rederive",
                        {"left": format_fraction(a), "op": op, "right": format_fraction(b)},
                        c,
                    ),
                ),
            ]
            if self.op.inspect(checks, node):
                expr = f"({first.state['expr']} {op} {second.state['expr']})"
                fact = self.add(
                    {"value": format_fraction(c), "expr": expr},
                    f"{format_fraction(c)} = {expr}",
                    "condition",
                    [node.id],
                )
                return fact, text
            rejected.add(text)
        return None

    def judged(self, numbers: list[Fraction]) -> bool:
        """More than half the judge samples say a label of ``judge_accept``."""
        replies = self.ask("judge", {"numbers": show(numbers)}, self.op.judge_samples, 16)
        agree = sum(parse_value(r) in self.op.judge_accept for r in replies)
        return 2 * agree > len(replies)


def divide(coefficients: list[Fraction], root: Fraction) -> list[Fraction] | None:
    """The quotient of exact synthetic division by ``(x - root)``, or None when it leaves a
    remainder."""
    quotient, carry = [], Fraction(0)
    for c in coefficients:
        carry = carry * root + c
        quotient.append(carry)
    return quotient[:-1] if quotient[-1] == 0 else None


def integer_form(coefficients: list[Fraction]) -> list[int]:
    """The coefficients scaled to integers (the same roots)."""
    scale = lcm(*(c.denominator for c in coefficients))
    return [int(c * scale) for c in coefficients]


class _Polynomial(_Loop):
    """Conditions: the roots found so far and the quotient left; a crossroad is a candidate
    root of the quotient."""

    def run(self) -> list[Thought]:
        problem = self.ctx.adapter.problem
        quotient = [Fraction(c) for c in problem.coefficients]
        roots: list[Fraction] = []
        rejected: list[Fraction] = []
        parents = [self.root.id] if self.root else []
        current = self.add(
            {"coefficients": [str(c) for c in quotient], "roots": []},
            problem.text,
            "condition",
            parents,
        )
        for attempt in range(1, self.op.max_rounds + 1):
            if len(quotient) == 1:
                answer = "x = " + ", ".join(format_fraction(r) for r in sorted(roots))
                return [self.add({"answer": answer}, answer, "answer", [current.id])]
            fields = {
                "equation": problem.text,
                "known": ", ".join(format_fraction(r) for r in roots) or "none",
                "rejected": ", ".join(format_fraction(r) for r in rejected) or "none",
                "attempt": str(attempt),
            }
            reply = self.ask("crossroad", fields, 1, self.op.max_tokens)[0]
            guesses = [g for g in parse_root_guesses(reply) if g not in rejected]
            for guess in guesses[: self.op.candidates]:
                text = f"x = {format_fraction(guess)}"
                node = self.add({"root": str(guess)}, text, "crossroad", [current.id])
                shown = format_polynomial(integer_form(quotient))
                checks = [
                    ("exact", lambda g=guess, q=quotient: divide(q, g) is not None),
                    (
                        "rederive",
                        lambda g=guess, shown=shown: self.rederived(
                            "rederive",
                            {"polynomial": shown, "root": format_fraction(g)},
                            Fraction(0),
                        ),
                    ),
                ]
                if self.op.inspect(checks, node):
                    quotient = divide(quotient, guess)
                    roots.append(guess)
                    left = format_polynomial(integer_form(quotient))
                    current = self.add(
                        {
                            "coefficients": [str(c) for c in quotient],
                            "roots": [str(r) for r in roots],
                        },
                        f"root {format_fraction(guess)}; left {left}",
                        "condition",
                        [node.id],
                    )
                    break
                rejected.append(guess)
        return []


class _Sequence(_Loop):
    """Conditions: the recurrence, its initial terms and the first ``terms`` terms computed
    exactly; a crossroad is a closed-form candidate derived from all of them."""

    def run(self) -> list[Thought]:
        problem = self.ctx.adapter.problem
        parents = [self.root.id] if self.root else []
        given = self.add({"rule": problem.rule}, problem.text, "condition", parents)
        values = problem.terms(max(self.op.terms, self.op.rederive_n))
        shown = ", ".join(f"a_{i} = {format_fraction(v)}" for i, v in enumerate(values, 1))
        terms = self.add({"terms": [str(v) for v in values]}, shown, "condition", [given.id])
        rejected: list[str] = []
        for attempt in range(1, self.op.max_rounds + 1):
            fields = {
                "sequence": problem.text,
                "terms": shown,
                "rejected": "; ".join(rejected) or "none",
                "attempt": str(attempt),
            }
            reply = self.ask("crossroad", fields, 1, self.op.max_tokens)[0]
            form = extract_closed_form(reply)
            if not form or form in rejected:
                continue
            node = self.add(
                {"closed_form": form}, f"a_n = {form}", "crossroad", [given.id, terms.id]
            )
            checks = [
                ("exact", lambda form=form: self.matches(form, values[: self.op.terms])),
                (
                    "rederive",
                    lambda form=form: self.rederived(
                        "rederive",
                        {"formula": form, "n": str(self.op.rederive_n)},
                        values[self.op.rederive_n - 1],
                    ),
                ),
            ]
            if self.op.inspect(checks, node):
                answer = f"a_n = {form}"
                return [self.add({"answer": answer}, answer, "answer", [node.id])]
            rejected.append(form)
        return []

    @staticmethod
    def matches(form: str, values: list[Fraction]) -> bool:
        """The closed form gives exactly ``values`` for n = 1, 2, ..."""
        try:
            tree = parse_expression(form, {"n"})
            return all(evaluate(tree, {"n": Fraction(n)}) == v for n, v in enumerate(values, 1))
        except ExpressionError:
            return False
