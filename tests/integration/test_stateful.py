"""The stateful suite in a real guest: it runs, it says its seed, and the seed repeats it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.vm

SUITE = "tests/guest/test_stateful.py"


def steps(results: Path) -> list[tuple[str, list[object]]]:
    """The steps the guest streamed to the host, in order."""
    found = []
    for path in sorted(results.glob("events*.jsonl")):
        for line in path.read_text().splitlines():
            event = json.loads(line)
            if event["event"] == "stateful-step":
                found.append((event["step"], event["args"]))
    return found


def test_a_seed_runs_the_same_sequences_again(harness_run, tmp_path: Path) -> None:
    first = harness_run("--suite", SUITE, "--explore", "3", "--seed", "12345")
    assert first.status == 0, first.output[-3000:]
    assert "seed 12345" in first.output
    assert first.json()["exploration"] == {"seed": 12345, "explore": 3}
    assert set(first.outcomes().values()) == {"passed"}
    sequence = steps(first.results)
    assert len({step for step, _ in sequence}) >= 4, sequence

    kept = tmp_path / "first"
    first.results.rename(kept)
    again = harness_run("--suite", SUITE, "--explore", "3", "--seed", "12345")
    assert again.status == 0, again.output[-3000:]
    assert steps(again.results) == sequence
