"""--shard K/N: the partition every shard computes alike, from real collections and durations."""

import json

import pytest

from harness import results, run
from harness.errors import UsageError
from harness.guest import protocol, shard


def collected(data_dir, name="events-private-pass.jsonl"):
    events = results.parse_events((data_dir / name).read_text())
    return next(e["nodeids"] for e in events if e["event"] == "collected")


def recorded_durations(data_dir):
    data = json.loads((data_dir / "results-private-7.2.json").read_text())
    return {t["nodeid"]: t["duration"] for t in data["tests"]}


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_the_shards_cover_the_selection_once_each_in_its_order(data_dir, count):
    nodeids = collected(data_dir)
    parts = [shard.select(nodeids, shard.Shard(k, count), {}) for k in range(1, count + 1)]
    assert sorted(n for part in parts for n in part) == sorted(nodeids)
    for part in parts:
        assert part == [n for n in nodeids if n in part]
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_recorded_durations_balance_the_shards(data_dir):
    durations = recorded_durations(data_dir)
    nodeids = [n for n in collected(data_dir) if n in durations]
    parts = [shard.select(nodeids, shard.Shard(k, 2), durations) for k in (1, 2)]
    loads = [sum(durations[n] for n in part) for part in parts]
    longest = max(durations[n] for n in nodeids)
    # Greedy longest-first: the loads differ by at most the longest test.
    assert abs(loads[0] - loads[1]) <= longest
    by_count = [shard.select(nodeids, shard.Shard(k, 2), {}) for k in (1, 2)]
    assert parts != by_count, "the durations changed nothing: they were not used"


def test_a_test_the_durations_lack_weighs_as_a_typical_one(data_dir):
    nodeids = [*collected(data_dir), "tests/guest/test_new.py::test_unknown[private]"]
    assigned = shard.assign(nodeids, 3, recorded_durations(data_dir))
    assert assigned == shard.assign(nodeids, 3, recorded_durations(data_dir))
    assert set(assigned) == {1, 2, 3}


def test_the_repetitions_of_a_test_stay_in_one_shard(data_dir):
    nodeids = [f"{n[:-1]}-{protocol.repeat_id(r)}]" for r in (1, 2, 3)
               for n in collected(data_dir)]
    owners: dict[str, set[int]] = {}
    for nodeid, owner in zip(nodeids, shard.assign(nodeids, 4, {}), strict=True):
        owners.setdefault(protocol.without_repeat(nodeid), set()).add(owner)
    assert all(len(o) == 1 for o in owners.values())
    assert len(owners) == len(collected(data_dir))


@pytest.mark.parametrize(("text", "problem"), [
    ("3/2", "K counts from 1 to N=2"), ("0/0", "at least one shard"), ("x", "is not K/N"),
    ("0/3", "K counts from 1"), ("1/2/3", "is not K/N"), ("", "is not K/N")])
def test_bad_shards_are_refused_with_the_reason(text, problem):
    with pytest.raises(ValueError, match=problem):
        shard.parse(text)


def test_a_bad_shard_is_a_usage_error_before_any_build(tmp_path):
    options = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path, shard="3/2")
    with pytest.raises(UsageError, match=r"--shard '3/2'.*K counts from 1 to N=2"):
        run.check_shard(options)


def test_shard_files_cut_on_the_first_boot_and_keep_the_shard_later(data_dir, tmp_path):
    durations = data_dir / "results-private-7.2.json"
    options = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path, shard="1/2",
                             durations=durations)
    first = run.shard_files(options, [])
    assert first[run.SHARD_DURATIONS_FILE]["tests/guest/test_hmm.py::test_open_close[private]"] \
        == pytest.approx(recorded_durations(data_dir)[
            "tests/guest/test_hmm.py::test_open_close[private]"])
    assert run.shard_files(options, ["a", "b"]) == {run.SHARD_KEEP_FILE: ["a", "b"]}
    unsharded = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path)
    assert run.shard_files(unsharded, ["a"]) == {}
