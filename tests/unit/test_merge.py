"""merge: shards, repeated runs and kernels into one report, from real captured results."""

import copy
import json

import pytest

from harness import cli, results
from harness.errors import UsageError
from harness.guest import shard
from harness.merge import Part, merge, merge_directories


def captured(data_dir, name="results-private-7.2.json"):
    return results.from_json(json.loads((data_dir / name).read_text()))


def shards_of(report, count, durations=None):
    """The reports `--shard K/count` would have written for the run `report` was."""
    selection = [t.nodeid for t in report.tests]
    owners = shard.assign(selection, count, durations or {})
    parts = []
    for index in range(1, count + 1):
        part = copy.deepcopy(report)
        part.tests = [t for t, o in zip(part.tests, owners, strict=True) if o == index]
        part.shard = {"shard": f"{index}/{count}", "selection": selection}
        parts.append(Part(f"shard-{index}", part))
    return parts


def outcomes(report):
    return [(t.nodeid, t.outcome, t.message, t.kernel_errors) for t in report.tests]


@pytest.mark.parametrize("name", ["results-private-7.2.json", "results-coherent-7.2.json"])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_merged_shards_are_the_unsharded_run(data_dir, name, count):
    whole = captured(data_dir, name)
    parts = shards_of(whole, count, {t.nodeid: t.duration for t in whole.tests})
    merged = merge(list(reversed(parts)))
    assert outcomes(merged) == outcomes(whole)
    assert merged.counts() == whole.counts() and merged.passed() == whole.passed()
    assert (merged.kernel, merged.mode, merged.shard) == (whole.kernel, whole.mode, {})
    assert merged.merged_from == [p.source for p in reversed(parts)]


def test_a_missing_shard_is_named(data_dir):
    parts = shards_of(captured(data_dir), 3)
    with pytest.raises(UsageError, match=r"shard 2/3 of the run whose shards 1/3 \(shard-1\), "
                                         r"3/3 \(shard-3\) are given is missing"):
        merge([parts[0], parts[2]])


def test_a_shard_given_twice_is_named(data_dir):
    parts = shards_of(captured(data_dir), 2)
    with pytest.raises(UsageError, match=r"shard 1/2 is given twice: shard-1 and again"):
        merge([*parts, Part("again", parts[0].report)])


def test_a_shard_that_never_collected_leaves_its_tests_not_run(data_dir):
    parts = shards_of(captured(data_dir), 2)
    lost = {t.nodeid for t in parts[1].report.tests}
    parts[1].report.tests = []
    merged = merge(parts)
    assert {t.nodeid for t in merged.tests if t.outcome == "not-run"} == lost
    assert not merged.passed()


def test_runs_of_different_kernels_are_refused_with_the_kernels_named(data_dir):
    other = captured(data_dir)
    other.kernel = {**other.kernel, "release": "7.3.0-rc4", "origin": "tree /src/linux"}
    runs = [Part("a", captured(data_dir)), Part("b", other)]
    with pytest.raises(UsageError, match=r"a: 7\.2\.13\+deb14-amd64 \(Debian sid .*\); "
                                         r"b: 7\.3\.0-rc4 \(tree /src/linux\)") as refused:
        merge(runs)
    assert "--allow-mixed" in refused.value.fix
    mixed = merge(runs, allow_mixed=True)
    assert len(mixed.tests) == 2 * len(other.tests)
    assert mixed.tests[0].nodeid.startswith("7.2.13+deb14-amd64::tests/guest/")
    assert mixed.tests[-1].nodeid.startswith("7.3.0-rc4::tests/guest/")
    assert mixed.kernel["release"] == "7.2.13+deb14-amd64, 7.3.0-rc4" and not mixed.kconfig


def test_runs_of_one_selection_become_repetitions_and_show_flakes(data_dir):
    first, second = captured(data_dir), captured(data_dir)
    passing = next(t for t in second.tests if t.outcome == "passed")
    passing.outcome = "failed"
    merged = merge([Part("1", first), Part("2", second)])
    assert len(merged.tests) == 2 * len(first.tests)
    base = passing.nodeid
    assert merged.repeats[base] == ["passed", "failed"]
    assert merged.flaky == [base]
    assert f"{base[:-1]}-repeat2]" in {t.nodeid for t in merged.tests}


def test_private_and_coherent_shards_merge_into_one_all_mode_report(data_dir):
    private, coherent = captured(data_dir), captured(data_dir, "results-coherent-7.2.json")
    merged = merge([*shards_of(private, 2), *shards_of(coherent, 2)])
    assert merged.mode == "all"
    assert outcomes(merged) == outcomes(private) + outcomes(coherent)


def test_a_merge_input_that_is_not_results_is_named(capsys, tmp_path, data_dir):
    (tmp_path / "run").mkdir()
    status = cli.main(["merge", str(tmp_path / "run"), str(data_dir / "results-private-7.2.json"),
                       "--results", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert status == cli.EXIT_HARNESS
    assert f"cannot read the merge input {tmp_path / 'run' / 'results.json'}" in err
    assert not (tmp_path / "out" / "results.json").exists()


def test_merge_writes_every_report_and_judges_it(tmp_path, data_dir):
    for index, part in enumerate(shards_of(captured(data_dir), 2), start=1):
        (tmp_path / f"s{index}").mkdir()
        (tmp_path / f"s{index}" / "results.json").write_text(
            json.dumps(results.to_json(part.report)))
    status = cli.main(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"),
                       "--results", str(tmp_path / "out")])
    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert status == cli.EXIT_FAILED  # the captured run has a failure and a hang
    assert written["counts"] == captured(data_dir).counts()
    assert {p.name for p in (tmp_path / "out").iterdir()} >= {"junit.xml", "results.ktap"}


def test_merge_refuses_to_overwrite_an_input(tmp_path, data_dir):
    (tmp_path / "results.json").write_text((data_dir / "results-private-7.2.json").read_text())
    with pytest.raises(UsageError, match="would overwrite the results"):
        merge_directories([tmp_path], tmp_path)
