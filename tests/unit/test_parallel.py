"""--jobs: what a host can hold, and the options each shard runs with."""

import os

import pytest

from harness import cli, parallel, run
from harness.errors import UsageError
from harness.parallel import HostCapacity


@pytest.mark.parametrize(("jobs", "host", "problem"), [
    (2, HostCapacity(2, 24000), ""),
    (3, HostCapacity(2, 24000), "needs a core per guest, and this host has 2"),
    (4, HostCapacity(8, 6000), "needs about 10416 MiB (4 x (2048 MiB guest + 300 MiB QEMU) + "
                               "1024 MiB for the host), and 6000 MiB is available"),
    (0, HostCapacity(8, 24000), "at least one guest"),
])
def test_what_a_host_can_hold(jobs, host, problem):
    found = parallel.jobs_problem(jobs, 2048, host)
    assert found == problem if not problem else problem in found


@pytest.mark.parametrize(("jobs", "requested", "cores", "cpus"), [
    (2, 2, 2, 1), (1, 2, 2, 2), (4, 2, 16, 2), (3, 8, 16, 5), (2, 1, 8, 1)])
def test_each_guest_gets_its_share_of_the_cores(jobs, requested, cores, cpus):
    assert parallel.guest_cpus(jobs, requested, cores) == cpus


def test_a_shard_runs_its_part_in_its_own_directory(tmp_path):
    options = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path, jobs=3,
                             baseline=tmp_path / "base", keyword="migrate")
    second = parallel.shard_options(options, 2, cpus=1)
    assert (second.results_dir, second.shard, second.jobs, second.cpus) == (
        tmp_path / "shard-2", "2/3", 1, 1)
    assert second.baseline is None and second.keyword == "migrate"


@pytest.mark.parametrize(("extra", "problem"), [
    ({"shard": "1/2"}, "--jobs and --shard do not go together"),
    ({"reference": True}, "--jobs and --reference do not go together")])
def test_jobs_refuse_what_they_cannot_split(tmp_path, extra, problem):
    options = run.RunOptions(results_dir=tmp_path, cache_dir=tmp_path, jobs=2, **extra)
    with pytest.raises(UsageError, match=problem):
        parallel.check(options, HostCapacity(2, 24000))


def test_more_jobs_than_this_host_has_cores_is_refused_before_any_build(capsys, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setenv("HMM_HARNESS_CACHE", str(tmp_path / "cache"))
    cores = len(os.sched_getaffinity(0))
    status = cli.main(["run", "--jobs", str(cores + 1), "--results", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert status == cli.EXIT_HARNESS
    assert f"needs a core per guest, and this host has {cores}" in err
    assert "fix: give a smaller --jobs" in err
    assert not (tmp_path / "cache").exists()
