"""--seed and --explore: what the stateful suite is given, and bad values refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import cli, exploration, guestroot, run
from harness.errors import UsageError


def test_a_given_seed_is_kept() -> None:
    assert exploration.parse_seed("1234") == 1234
    assert exploration.parse_seed("0x10") == 16


def test_without_a_seed_each_run_draws_its_own() -> None:
    seeds = {exploration.parse_seed(None) for _ in range(8)}
    assert len(seeds) > 1
    assert all(0 <= seed < exploration.SEED_LIMIT for seed in seeds)


@pytest.mark.parametrize("text", ["x", "1.5", "", "-3", str(2**32)])
def test_a_seed_that_is_not_a_32_bit_integer_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--seed"):
        exploration.parse_seed(text)


@pytest.mark.parametrize("count", [0, -1])
def test_explore_needs_a_sequence(count: int) -> None:
    options = run.RunOptions(results_dir=Path("/tmp/r"), cache_dir=Path("/tmp/c"),
                             explore=count)
    with pytest.raises(UsageError, match=f"--explore {count}"):
        run.validate_request(options)


@pytest.mark.parametrize("argv", [["run", "--seed", "abc"], ["run", "--explore", "0"],
                                  ["run", "--explore", "-2"], ["run", "--explore", "many"]])
def test_bad_exploration_options_exit_125_before_anything_is_built(
        argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main([*argv, "--results", str(tmp_path / "r"), "--cache-dir",
                       str(tmp_path / "cache")])
    assert status == cli.EXIT_HARNESS
    assert argv[1] in capsys.readouterr().err
    assert not (tmp_path / "cache").exists()


def test_the_seed_reaches_the_plan_and_the_report(tmp_path: Path) -> None:
    args = cli.build_parser().parse_args(["run", "--seed", "77", "--explore", "3",
                                          "--results", str(tmp_path)])
    options = cli.options_from(args)
    assert (options.seed, options.explore) == (77, 3)


def test_a_root_is_named_by_its_package_list() -> None:
    one = guestroot.root_name(["python3", "gcc-16"])
    assert one == guestroot.root_name(["gcc-16", "python3"])
    assert one != guestroot.root_name(["python3", "gcc-16", "python3-hypothesis"])
    assert one.startswith("root-")
