"""Addition problems and their digit-by-digit worked solutions.

A problem is two operands with the same number of digits n (2..5, no leading zero). The worked
solution has one line per digit, least significant first, then the answer line:

    47+85  ->  "7+5=12 write 2 carry 1\n4+8+1=13 write 3 carry 1\nanswer: 132"

The carry-in appears as a third term only when it is 1, as a person would write it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MIN_DIGITS = 2
MAX_DIGITS = 5


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def prompt(self) -> str:
        """The user message: `a+b`."""
        return f"{self.a}+{self.b}"

    @property
    def answer(self) -> str:
        return str(self.a + self.b)


def worked_solution(problem: Problem) -> str:
    """The target response (without the end-of-turn token) for `problem`."""
    da, db = str(problem.a)[::-1], str(problem.b)[::-1]
    n = max(len(da), len(db))
    da, db = da.ljust(n, "0"), db.ljust(n, "0")
    carry, lines = 0, []
    for x, y in zip(da, db):
        s = int(x) + int(y) + carry
        terms = f"{x}+{y}" + ("+1" if carry else "")
        carry = s // 10
        lines.append(f"{terms}={s} write {s % 10} carry {carry}")
    lines.append(f"answer: {problem.a + problem.b}")
    return "\n".join(lines)


def sample_problem(rng: random.Random, min_digits: int = MIN_DIGITS, max_digits: int = MAX_DIGITS) -> Problem:
    """Draw n uniformly from [min_digits, max_digits], then two n-digit operands uniformly."""
    n = rng.randint(min_digits, max_digits)
    lo, hi = 10 ** (n - 1), 10**n - 1
    return Problem(rng.randint(lo, hi), rng.randint(lo, hi))


def sample_problems(seed: int, count: int, min_digits: int = MIN_DIGITS, max_digits: int = MAX_DIGITS) -> list[Problem]:
    """`count` problems from a private RNG seeded with `seed` (same seed, same list)."""
    rng = random.Random(seed)
    return [sample_problem(rng, min_digits, max_digits) for _ in range(count)]
