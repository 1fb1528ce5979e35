"""Pure: which of N shards each test of a selection belongs to (`--shard K/N`).

The guest applies it to the collected selection, the host reads it back to check a merge.
Every shard of one run must compute the same partition, so it depends only on the selection,
N and the durations given, never on the shard asking. The repetitions of a test (--repeat)
stay in one shard, so its pass count and flakiness are known there.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.guest import protocol

_SHARD = re.compile(r"(\d+)/(\d+)")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse(text: str) -> Shard:
    """`K/N`, 1 <= K <= N; ValueError says what is wrong."""
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"'{text}' is not K/N (shard K of N, e.g. 2/4)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise ValueError(f"'{text}': a run has at least one shard")
    if not 1 <= index <= count:
        raise ValueError(f"'{text}': K counts from 1 to N={count}")
    return Shard(index, count)


def assign(nodeids: Sequence[str], count: int, durations: Mapping[str, float]) -> list[int]:
    """The shard (1..count) of each nodeid. Longest tests first, each to the least loaded
    shard, ties to the lower shard and the earlier test: balanced by the durations recorded
    (keyed by the nodeid without its repetition), every test alike when none are."""
    groups: dict[str, list[int]] = {}
    for position, nodeid in enumerate(nodeids):
        groups.setdefault(protocol.without_repeat(nodeid), []).append(position)
    known = [durations[base] for base in groups if base in durations]
    # A test the earlier results do not hold (new, or renamed) weighs as a typical one.
    typical = statistics.median(known) if known else 1.0
    weights = {base: durations.get(base, typical) * len(positions)
               for base, positions in groups.items()}
    loads = [0.0] * count
    shard_of_group: dict[str, int] = {}
    first_position = {base: positions[0] for base, positions in groups.items()}
    for base in sorted(groups, key=lambda b: (-weights[b], first_position[b])):
        lightest = min(range(count), key=lambda s: (loads[s], s))
        loads[lightest] += weights[base]
        shard_of_group[base] = lightest + 1
    return [shard_of_group[protocol.without_repeat(nodeid)] for nodeid in nodeids]


def select(nodeids: Sequence[str], shard: Shard, durations: Mapping[str, float]) -> list[str]:
    """The nodeids of `shard`, in selection order."""
    return [nodeid for nodeid, owner in zip(nodeids, assign(nodeids, shard.count, durations),
                                            strict=True) if owner == shard.index]
