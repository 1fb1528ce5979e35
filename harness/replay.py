"""Acts: replays the stateful sequence that crashed or hung a run's guest in fresh guests, to
confirm it and to shrink it by delta debugging, one boot per try; writes the reproducers.

`python -m harness reproduce RESULTS` reads RESULTS (a run that had the stateful suite crash
or hang the guest), and writes RESULTS/reproducer/:
- sequence.json, the steps up to the one the guest died in, as the guest streamed them;
- minimal.json, the shortest subsequence found that still kills a fresh guest;
- test_reproducer.py and repro.c, that subsequence as a pytest case and as a C program;
- replay-N/, the results directory of each try.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness import reproducer, resultsdir, run
from harness.commands import CommandRunner
from harness.errors import UsageError
from harness.progress import Progress

STATEFUL_TEST = "tests/guest/test_stateful.py::test_sequences_match_the_model"
REPLAY_SUITE = "tests/guest/replay/replay_recorded.py"
DIED = ("crashed", "hung")
# Boots a minimisation may take by default; each is a fresh guest (about 20 s under TCG).
DEFAULT_BUDGET = 12


@dataclass
class Reproduction:
    directory: Path
    outcome: str  # what the original run's stateful test did: crashed or hung
    steps: int
    confirmed: bool = False
    minimal: int = 0
    boots: int = 0
    seconds: float = 0.0


def died_sequence(results_dir: Path) -> tuple[str, reproducer.RecordedSequence]:
    """The outcome and the sequence of the stateful test that killed a guest of this run."""
    data = resultsdir.read(results_dir, "the run to reproduce", "reproduce")
    died = [t for t in data["tests"] if str(t["nodeid"]).startswith(STATEFUL_TEST)
            and t.get("outcome") in DIED]
    if not died:
        raise UsageError(f"no stateful test crashed or hung the guest in {results_dir}",
                         "give a results directory whose test_sequences_match_the_model "
                         "is crashed or hung (run with --stateful-unsafe to look for one)")
    nodeid = str(died[0]["nodeid"])
    for events_file in sorted(results_dir.glob("events*.jsonl")):
        events = reproducer.read_events(events_file.read_text())
        starts = [e for e in events if e.get("event") == "test-start"]
        if starts and starts[-1].get("nodeid") == nodeid and \
                (sequence := reproducer.last_sequence(events)) is not None:
            return str(died[0]["outcome"]), sequence
    raise UsageError(f"{results_dir} has no stateful steps for {nodeid} in its events files",
                     "the run must come from a harness whose stateful suite streams its steps")


def reproduce(results_dir: Path, budget: int, runner: CommandRunner,
              progress: Progress) -> Reproduction:
    started = time.monotonic()
    outcome, sequence = died_sequence(results_dir)
    options = run.load_options(results_dir)
    out = results_dir / "reproducer"
    out.mkdir(exist_ok=True)
    (out / "sequence.json").write_text(json.dumps(sequence.to_json(), indent=1))
    result = Reproduction(out, outcome, len(sequence.steps))
    progress.say(f"replaying the {len(sequence.steps)} steps that {outcome} the guest "
                 f"({sequence.variant}), in a fresh guest")

    def dies(steps: Sequence[reproducer.Step]) -> bool:
        result.boots += 1
        attempt = out / f"replay-{result.boots}"
        attempt.mkdir(exist_ok=True)
        candidate = attempt / "sequence.json"
        candidate.write_text(json.dumps(sequence.with_steps(steps).to_json()))
        replay_options = dataclasses.replace(
            options, results_dir=attempt, suites=(REPLAY_SUITE,), keyword=None,
            mode=sequence.variant, replay=candidate, resume=False, repeat=1,
            reference=False, shard=None, durations=None, jobs=1, baseline=None)
        report = run.run(replay_options, runner, Progress())
        died_now = any(t.outcome in DIED for t in report.tests)
        progress.say(f"try {result.boots}: {len(steps)} steps: "
                     f"{'the guest died' if died_now else 'the guest survived'}")
        return died_now

    result.confirmed = dies(sequence.steps)
    minimal = list(sequence.steps)
    if result.confirmed:
        minimal, _ = reproducer.minimise(sequence.steps, dies, budget)
    result.minimal = len(minimal)
    shrunk = sequence.with_steps(minimal)
    why = (f"{'Kills' if result.confirmed else 'Killed once (not again in a fresh guest)'} "
           f"the guest ({outcome}): {len(minimal)} of the {len(sequence.steps)} steps the "
           f"stateful suite ran in {results_dir.name}.")
    (out / "minimal.json").write_text(json.dumps(shrunk.to_json(), indent=1))
    (out / "test_reproducer.py").write_text(reproducer.pytest_case(shrunk, "reproducer", why))
    (out / "repro.c").write_text(reproducer.c_program(shrunk, why))
    result.seconds = time.monotonic() - started
    return result
