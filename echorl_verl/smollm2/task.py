"""Arithmetic problems with n operations, their worked solutions, and the two-shot chat prompt SmolLM2 follows.

Why: SmolLM2-135M-Instruct ignores a zero-shot answer format, but with two worked examples in earlier chat
turns it answers in worked lines ending `Answer: N` (../shared/notes/smollm2.md). With one operation and
the mix below (50% bare one-digit `a op b`, 25% bare two-digit, 25% one-step word problems) it succeeds on about
half of its samples at temperature 0.7, with all-success, mixed and all-fail groups. Problems with more
operations (issue 15: steps for the echo term to choose from) use the same generator: `operations=k` gives k
worked lines before the answer line.

    one operation:   "What is 7 x 8?"                                   -> "7 x 8 = 56\\nAnswer: 56"
    two operations:  "What is (7 x 8) + 9?"                             -> "7 x 8 = 56\\n56 + 9 = 65\\nAnswer: 65"
    word, two:       "Anna has 3 boxes with 4 pencils each. She buys 5 more pencils. How many pencils does she
                      have now?"                                        -> "3 x 4 = 12\\n12 + 5 = 17\\nAnswer: 17"

Every intermediate value is a non-negative integer (subtraction never goes below 0, division is exact).
Bare one-digit problems add or multiply (`KIND_OPS`): one-digit subtraction was the model's weak spot (vLLM bf16,
T=0.7, 64 prompts x 8: + 0.88, x 0.78, - 0.49 and no all-success group in 13), and the all-success groups
EchoRL needs come from the easy one-digit problems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

INSTRUCTION = "Solve it step by step, one step per line. The last line must be: Answer: <number>"
# kind -> share of the problems (exact counts, see `kinds_for`)
MIX = (("one_digit", 0.5), ("two_digit", 0.25), ("word", 0.25))
KINDS = tuple(kind for kind, _ in MIX)
# (user question, assistant answer) of the two earlier chat turns
SHOTS = (
    ("Tom has 3 bags with 4 apples each. He buys 5 more apples. How many apples does he have now?",
     "3 x 4 = 12\n12 + 5 = 17\nAnswer: 17"),
    ("What is 14 + 23?", "14 + 23 = 37\nAnswer: 37"),
)
#: operations of the bare kinds (word problems: + - x /, see _word)
KIND_OPS = {"one_digit": "+x", "two_digit": "+-"}
APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "x": lambda a, b: a * b, "/": lambda a, b: a // b}
NAMES = (("Anna", "she"), ("Ben", "he"), ("Lily", "she"), ("Sam", "he"), ("Mia", "she"), ("Leo", "he"))
ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books")
CONTAINERS = ("bags", "boxes", "packs", "baskets")


@dataclass(frozen=True)
class Step:
    left: int
    op: str
    right: int

    @property
    def result(self) -> int:
        return APPLY[self.op](self.left, self.right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right} = {self.result}"


@dataclass(frozen=True)
class Problem:
    question: str
    steps: tuple[Step, ...]
    kind: str

    @property
    def answer(self) -> int:
        return self.steps[-1].result

    @property
    def operations(self) -> int:
        return len(self.steps)


def worked_solution(problem: Problem) -> str:
    """The target response: one line per operation, then `Answer: N` (no end-of-turn token)."""
    return "\n".join([*map(str, problem.steps), f"Answer: {problem.answer}"])


def user_turn(question: str) -> str:
    return f"{question}\n{INSTRUCTION}"


def messages(question: str, shots: int = len(SHOTS)) -> list[dict]:
    """The chat prompt: the first `shots` worked examples as earlier turns (default both), then the question (no
    system message: SmolLM2's template adds its default one). Zero shots suit a model warmed up on the worked
    format (echorl_verl.smollm2.warmup): about 70 prompt tokens instead of about 215."""
    if not isinstance(shots, int) or not 0 <= shots <= len(SHOTS):
        raise ValueError(f"shots must be an integer from 0 to {len(SHOTS)}, got {shots!r}")
    turns = []
    for q, a in SHOTS[:shots]:
        turns += [{"role": "user", "content": user_turn(q)}, {"role": "assistant", "content": a}]
    return turns + [{"role": "user", "content": user_turn(question)}]


def _next_step(rng: random.Random, value: int, ops: str, lo: int, hi: int) -> Step:
    """One operation on `value` with an operand from [lo, hi] that keeps the result a non-negative integer."""
    choices = [op for op in ops if (op != "-" or value >= lo) and (op != "x" or value <= 20)
               and (op != "/" or any(value % d == 0 and value // d > 1 for d in range(max(lo, 2), hi + 1)))]
    op = rng.choice(choices or ["+"])
    if op == "-":
        return Step(value, op, rng.randint(lo, min(hi, value)))
    if op == "/":
        return Step(value, op, rng.choice([d for d in range(max(lo, 2), hi + 1) if value % d == 0 and value // d > 1]))
    return Step(value, op, rng.randint(lo, hi))


def _bare(rng: random.Random, operations: int, lo: int, hi: int, ops: str, kind: str) -> Problem:
    steps = [_next_step(rng, rng.randint(lo, hi), ops, lo, hi)]
    while len(steps) < operations:
        steps.append(_next_step(rng, steps[-1].result, ops, lo, hi))
    text = f"{steps[0].left} {steps[0].op} {steps[0].right}"
    for s in steps[1:]:
        text = f"({text}) {s.op} {s.right}"
    return Problem(f"What is {text}?", tuple(steps), kind)


def _word(rng: random.Random, operations: int) -> Problem:
    name, he = rng.choice(NAMES)
    items, box = rng.choice(ITEMS), rng.choice(CONTAINERS)
    op = rng.choice("+-x/" if operations == 1 else "+-x")  # sharing out ends the story: last step only
    if op == "x":
        step = Step(rng.randint(2, 9), "x", rng.randint(2, 9))
        sentences = [f"{name} has {step.left} {box} with {step.right} {items} each."]
    elif op == "/":
        q, d = rng.randint(2, 9), rng.randint(2, 9)
        step = Step(q * d, "/", d)
        sentences = [f"{name} has {step.left} {items} and shares them equally among {step.right} friends."]
    else:
        step = _next_step(rng, rng.randint(5, 20), op, 2, 20)
        verb = "gets" if op == "+" else "gives away"
        sentences = [f"{name} has {step.left} {items} and {verb} {step.right}" + (" more." if op == "+" else ".")]
    steps = [step]
    while len(steps) < operations:
        last = len(steps) == operations - 1
        step = _next_step(rng, steps[-1].result, "+-/" if last else "+-", 2, 20 if not last else 9)
        steps.append(step)
        sentences.append({"+": f"{he.capitalize()} buys {step.right} more {items}.",
                          "-": f"{he.capitalize()} gives away {step.right} {items}.",
                          "/": f"{he.capitalize()} shares them equally among {step.right} friends."}[step.op])
    if steps[-1].op == "/":
        sentences.append(f"How many {items} does each friend get?")
    else:
        sentences.append(f"How many {items} does {he} have now?")
    return Problem(" ".join(sentences), tuple(steps), "word")


def sample_problem(rng: random.Random, kind: str, operations: int = 1) -> Problem:
    """One problem of `kind` (see MIX) with `operations` worked steps."""
    if operations < 1:
        raise ValueError(f"operations must be >= 1, got {operations}")
    if kind == "one_digit":
        return _bare(rng, operations, 1, 9, KIND_OPS[kind], kind)
    if kind == "two_digit":
        return _bare(rng, operations, 10, 99, KIND_OPS[kind], kind)
    if kind == "word":
        return _word(rng, operations)
    raise ValueError(f"unknown kind {kind!r}: one of {KINDS}")


def kinds_for(rng: random.Random, count: int) -> list[str]:
    """`count` kinds in MIX's exact proportions (largest remainder), shuffled."""
    raw = [share * count for _, share in MIX]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(MIX)), key=lambda i: counts[i] - raw[i])[: count - sum(counts)]:
        counts[i] += 1
    kinds = [kind for (kind, _), c in zip(MIX, counts) for _ in range(c)]
    rng.shuffle(kinds)
    return kinds


def sample_problems(seed: int, count: int, operations: int = 1, exclude: frozenset[str] = frozenset()) -> list[Problem]:
    """`count` problems in MIX's proportions from a private RNG (same arguments, same list).

    Questions in `exclude` (e.g. the validation set's) and the prompt's own examples are never drawn;
    other repeats are allowed (there are only ~250 one-digit one-operation questions).
    """
    rng = random.Random(seed)
    banned = set(exclude) | {q for q, _ in SHOTS}
    problems = []
    for kind in kinds_for(rng, count):
        for _ in range(1000):
            p = sample_problem(rng, kind, operations)
            if p.question not in banned:
                break
        else:
            raise ValueError(f"no {kind} problem with {operations} operations outside the excluded set; exclude fewer")
        problems.append(p)
    return problems
