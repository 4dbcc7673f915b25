"""The four strategies as graphs of the operation vocabulary (the configs in
``conf/reason/strategy/`` hold the same graphs; a test keeps them equal).

- IO and CoT: one prompt, ``n`` samples; the first answer is the pick (pass@1 of the first
  sample), any of the ``n`` counts for ``reason/any_correct``.
- Tree of Thoughts for Game of 24 (Yao et al., arXiv:2305.10601, Sec. 4.1): three rounds of
  propose -> value (3 samples, sure/likely/impossible = 20/1/0.001, summed) -> keep the best 5,
  then the answer written from each kept path (the fourth step), as published (breadth-first,
  greedy selection).
- Graph of Thought (Lei et al., arXiv:2308.08614): the condition / crossroad loop of
  :mod:`llm.reasoning.got` with the task's inspectors.

A user's strategy is any graph the controller runs (see :mod:`llm.reasoning.controller`),
e.g. ToT with an exact step check pruning bad arithmetic before the value prompt::

    graph:
      - repeat: 3
        ops:
          - {op: generate, prompt: propose}
          - {op: validate, checker: step}
          - {op: keep_valid}
          - {op: score, prompt: value, samples: 3}
          - {op: keep_best_n, n: 5}
      - {op: generate, prompt: finish}
      - {op: ground_truth}
"""

from __future__ import annotations

from llm.reasoning.got import INSPECTORS

TOT_VALUES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}


def io(n: int = 1) -> list[dict]:
    """Input-output prompting with ``n`` samples."""
    return [{"op": "generate", "prompt": "io", "k": n}, {"op": "ground_truth"}]


def cot(n: int = 1) -> list[dict]:
    """Chain-of-thought prompting with ``n`` samples."""
    return [{"op": "generate", "prompt": "cot", "k": n}, {"op": "ground_truth"}]


def tot(breadth: int = 5, value_samples: int = 3, steps: int = 3) -> list[dict]:
    """Tree of Thoughts for Game of 24 as published (``steps`` propose rounds + the answer)."""
    return [
        {
            "repeat": steps,
            "ops": [
                {"op": "generate", "prompt": "propose", "k": 1},
                {
                    "op": "score",
                    "prompt": "value",
                    "samples": value_samples,
                    "mapping": dict(TOT_VALUES),
                },
                {"op": "keep_best_n", "n": breadth},
            ],
        },
        {"op": "generate", "prompt": "finish", "k": 1},
        {"op": "ground_truth"},
    ]


def got(task: str, max_rounds: int = 12) -> list[dict]:
    """Graph of Thought with every inspector of ``task``."""
    return [
        {"op": "got", "inspectors": list(INSPECTORS[task]), "max_rounds": max_rounds},
        {"op": "ground_truth"},
    ]
