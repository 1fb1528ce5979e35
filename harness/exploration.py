"""Decides how much the stateful suite explores, and from which seed, before anything boots.

The seed makes a run repeatable: Hypothesis draws every sequence of the stateful suite from
it, so the same seed, kernel and selection replay the same sequences (--seed N). --explore is
the number of sequences each state machine runs.
"""

from __future__ import annotations

import secrets

from harness.errors import UsageError

# Sequences a state machine runs by default. Under TCG the private machine runs about 54
# sequences a minute (docs/stateful.md), so the default adds about 35 s to a run.
DEFAULT_EXPLORE = 30
# Hypothesis takes seeds of any size; a 32-bit one is easy to copy from a log.
SEED_LIMIT = 2**32


def parse_seed(text: str | None) -> int:
    """The seed given as --seed, or a fresh one; UsageError for anything but an integer."""
    if text is None:
        return secrets.randbelow(SEED_LIMIT)
    try:
        seed = int(text, 0)
    except ValueError:
        raise UsageError(f"--seed {text!r} is not an integer",
                         "give the seed an earlier run printed, e.g. --seed 1234") from None
    if not 0 <= seed < SEED_LIMIT:
        raise UsageError(f"--seed {seed} is outside 0..{SEED_LIMIT - 1}",
                         "give the seed an earlier run printed") from None
    return seed


def check_explore(count: int) -> None:
    if count < 1:
        raise UsageError(f"--explore {count}: the stateful suite runs at least one sequence",
                         f"give --explore 1 or more (the default is {DEFAULT_EXPLORE})")
