"""Replays one recorded stateful sequence, for `python -m harness reproduce`.

Not collected by default: the harness runs it with `--suite` and hands it the sequence as
--hmm-replay (JSON: variant, regions, steps, as the stateful suite streamed them).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from harness.guest import model as m
from tests.guest.test_stateful import fault_around_off, replay

if TYPE_CHECKING:
    from harness.guest.protocol import EventChannel, Variant

__all__ = ["fault_around_off"]


def test_replay_recorded(variant: Variant, pytestconfig: pytest.Config,
                         fault_around_off: bool, harness_events: EventChannel) -> None:
    path = pytestconfig.getoption("hmm_replay")
    if not path:
        pytest.fail("no sequence to replay: the harness passes one with --hmm-replay")
    with open(path) as f:
        recorded = json.load(f)
    if recorded["variant"] != variant.name:
        pytest.skip(f"the sequence was recorded on the {recorded['variant']} devices")
    regions = [(name, m.Kind[kind], npages) for name, kind, npages in recorded["regions"]]
    if not fault_around_off and any(kind is not m.Kind.PRIVATE for _, kind, _ in regions):
        pytest.skip("the sequence uses shared buffers, which need fault-around off "
                    "(/sys/kernel/debug/fault_around_bytes)")
    replay(variant, [(step, args) for step, args in recorded["steps"]], fault_around_off,
           regions, harness_events)
