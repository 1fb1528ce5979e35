"""The reproducer: the sequence a dead guest streamed, its shrinking, and the C it becomes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import reproducer

DATA = Path(__file__).parent / "data"
UAPI_HEADER = DATA / "linux-7.2.13-lib-test_hmm_uapi.h"

SETUP = {"event": "stateful-sequence", "variant": "private",
         "devices": ["/dev/hmm_dmirror0", "/dev/hmm_dmirror1"],
         "regions": [["anon", "PRIVATE", 24], ["shared", "SHARED", 12], ["file", "FILE", 12]],
         "evict": True}
STEPS = [("cpu_write", ("anon", 0, 4)), ("migrate_to_device", (0, "anon", 0, 4)),
         ("mprotect", ("anon", "read")), ("fork_child", ("shared", True)),
         ("fail_next_allocation", (1,)), ("reopen", (1,)), ("dontneed", ("file", 2, 3)),
         ("evict", (0, "anon", 1, 2)), ("exclusive", (1, "anon", 5, 1)),
         ("device_write", (1, "file", 0, 2)), ("cpu_read", ("shared", 0, 12)),
         ("migrate_to_system", (0, "anon", 0, 24)), ("device_read", (0, "anon", 0, 4))]


def events(steps: list[tuple[str, tuple[object, ...]]]) -> list[dict[str, object]]:
    return [SETUP] + [{"event": "stateful-step", "step": s, "args": list(a)} for s, a in steps]


def test_the_last_sequence_of_a_boot_runs_up_to_the_last_step_streamed() -> None:
    earlier = [{"event": "stateful-sequence", **{k: v for k, v in SETUP.items() if k != "event"}},
               {"event": "stateful-step", "step": "cpu_read", "args": ["anon", 0, 1]}]
    text = "\n".join(json.dumps(e) for e in earlier + events(STEPS)) + '\n{"event": "stat'
    sequence = reproducer.last_sequence(reproducer.read_events(text))
    assert sequence is not None
    assert sequence.steps == tuple(STEPS)
    assert sequence.regions[0] == ("anon", "PRIVATE", 24)


def test_no_stateful_sequence_gives_none() -> None:
    assert reproducer.last_sequence([{"event": "test-start", "nodeid": "x"}]) is None


def test_minimise_keeps_the_steps_that_matter_and_the_last_one() -> None:
    steps = [(f"s{i}", (i,)) for i in range(16)]
    needed = {"s3", "s11", "s15"}
    tried: list[int] = []

    def dies(candidate: object) -> bool:
        names = {name for name, _ in candidate}  # type: ignore[attr-defined]
        tried.append(len(names))
        return needed <= names

    minimal, tries = reproducer.minimise(steps, dies, budget=100)
    assert [name for name, _ in minimal] == ["s3", "s11", "s15"]
    assert tries == len(tried) < 100


def test_minimise_stops_at_its_budget() -> None:
    steps = [(f"s{i}", (i,)) for i in range(64)]
    minimal, tries = reproducer.minimise(steps, lambda c: True, budget=3)
    assert tries == 3
    assert minimal[-1] == ("s63", (63,))


def test_the_pytest_case_names_every_step() -> None:
    sequence = reproducer.last_sequence(events(STEPS))
    assert sequence is not None
    text = reproducer.pytest_case(sequence, "reproducer", "Kills the guest.")
    compile(text, "test_reproducer.py", "exec")
    assert "('anon', m.Kind.PRIVATE, 24)" in text
    assert "('evict', (0, 'anon', 1, 2))," in text


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this host")
@pytest.mark.parametrize("steps", [STEPS, STEPS[-1:]], ids=["every-step", "one-step"])
def test_the_c_reproducer_compiles_against_the_kernels_own_header(
        tmp_path: Path, steps: list[tuple[str, tuple[object, ...]]]) -> None:
    sequence = reproducer.last_sequence(events(steps))
    assert sequence is not None
    (tmp_path / "test_hmm_uapi.h").write_bytes(UAPI_HEADER.read_bytes())
    source = tmp_path / "repro.c"
    source.write_text(reproducer.c_program(sequence, "Kills the guest */ (test)."))
    built = subprocess.run(["gcc", "-Wall", "-Werror", "-I", str(tmp_path), "-o",
                            str(tmp_path / "repro"), str(source)], capture_output=True,
                           text=True)
    assert built.returncode == 0, built.stderr
    text = source.read_text()
    assert text.count("observe();") == len(steps) + 1
    assert ("HMM_DMIRROR_EVICT_PFNS is the hmm-harness extension" in text) == \
        any(step == "evict" for step, _ in steps)


def test_the_sequence_of_a_real_crash_ends_with_the_step_the_guest_died_in() -> None:
    # Captured from `run --suite tests/guest/test_stateful.py --stateful-unsafe --explore 100
    # --seed 11` on 7.2.13: the guest died in test_hmm's dmirror_do_write() (Oops).
    text = (DATA / "events-stateful-unsafe-crash-7.2.jsonl").read_text()
    sequence = reproducer.last_sequence(reproducer.read_events(text))
    assert sequence is not None
    assert len(sequence.steps) == 13
    assert sequence.steps[0] == ("migrate_to_device", (1, "wide", 128, 392))
    assert sequence.steps[-1] == ("device_write", (1, "wide", 212, 6))
    assert [r[0] for r in sequence.regions] == ["anon", "wide", "shared", "file"]


def test_reproduce_refuses_what_has_no_crashed_stateful_test(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli

    assert cli.main(["reproduce", str(tmp_path / "nowhere")]) == cli.EXIT_HARNESS
    assert "cannot read the run to reproduce" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_bytes((DATA / "results-private-7.2.json").read_bytes())
    assert cli.main(["reproduce", str(run_dir)]) == cli.EXIT_HARNESS
    assert "no stateful test crashed or hung the guest" in capsys.readouterr().err
    assert cli.main(["reproduce", str(run_dir), "--budget", "-1"]) == cli.EXIT_HARNESS
    assert "--budget -1" in capsys.readouterr().err
