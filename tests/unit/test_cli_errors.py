"""Bad input ends with exit 125 and a message naming the problem and the fix, in a second,
before anything is downloaded or booted."""

import os
import shutil

import pytest

from harness import cli


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HMM_HARNESS_CACHE", str(tmp_path / "cache"))


def _run(capsys, *argv):
    status = cli.main(["run", *argv])
    return status, capsys.readouterr().err


def test_unknown_mode(capsys, tmp_path):
    status, err = _run(capsys, "--mode", "coherentish", "--results", str(tmp_path))
    assert status == cli.EXIT_HARNESS
    assert "unknown --mode 'coherentish'" in err and "private, coherent, all" in err


def test_unknown_option_is_a_usage_error_not_argparse_exit_2(capsys, tmp_path):
    status, err = _run(capsys, "--kernal", "sid")
    assert status == cli.EXIT_HARNESS
    assert "--kernal" in err and "--help" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; see the next test")
def test_results_dir_without_permission(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    status, err = _run(capsys, "--results", str(locked / "r"))
    assert status == cli.EXIT_HARNESS and "cannot write the results directory" in err


def test_results_dir_that_is_a_file(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    status, err = _run(capsys, "--results", str(blocker / "results"))
    assert status == cli.EXIT_HARNESS
    assert f"cannot write the results directory {blocker / 'results'}" in err
    assert "--results" in err
    assert blocker.read_text() == "not a directory"


def test_results_dir_on_a_read_only_filesystem(capsys):
    if not os.path.ismount("/proc"):
        pytest.skip("no /proc mounted")
    status, err = _run(capsys, "--results", "/proc/hmm-results")
    assert status == cli.EXIT_HARNESS and "cannot write the results directory" in err


def test_qemu_not_installed_at_given_path(capsys, tmp_path):
    status, err = _run(capsys, "--results", str(tmp_path), "--qemu", "/nonexistent/qemu")
    assert status == cli.EXIT_HARNESS
    assert "QEMU '/nonexistent/qemu' does not exist" in err and "apt-get install" in err


def test_qemu_not_on_path(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    status, err = _run(capsys, "--results", str(tmp_path / "r"))
    assert status == cli.EXIT_HARNESS
    assert "'qemu-system-x86_64' is not installed" in err and "qemu-system-x86" in err


@pytest.fixture
def fake_qemu_on_path(tmp_path, monkeypatch):
    """Validation only checks that QEMU is there; these tests fail before it would run."""
    real = shutil.which("qemu-system-x86_64")
    if real is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    return real


def test_kernel_path_that_does_not_exist(capsys, tmp_path, fake_qemu_on_path):
    status, err = _run(capsys, "--results", str(tmp_path / "r"), "--kernel",
                       str(tmp_path / "no-such-kernel"))
    assert status == cli.EXIT_HARNESS
    assert f"--kernel {tmp_path / 'no-such-kernel'} does not exist" in err


def test_kernel_without_device_private_names_the_options(capsys, tmp_path, data_dir,
                                                         fake_qemu_on_path):
    kernel = tmp_path / "7.2.13-custom"
    kernel.mkdir()
    (kernel / "vmlinuz").write_bytes((data_dir / "vmlinuz-7.2.13+deb14-amd64.head").read_bytes())
    config = (data_dir / "config-7.2.13+deb14-amd64").read_text()
    for option in ("CONFIG_DEVICE_PRIVATE", "CONFIG_ZONE_DEVICE", "CONFIG_TRANSPARENT_HUGEPAGE"):
        config = config.replace(f"{option}=y", f"# {option} is not set")
    (kernel / "config").write_text(config)
    status, err = _run(capsys, "--results", str(tmp_path / "r"), "--kernel", str(kernel))
    assert status == cli.EXIT_HARNESS
    for option in ("CONFIG_DEVICE_PRIVATE", "CONFIG_ZONE_DEVICE", "CONFIG_TRANSPARENT_HUGEPAGE"):
        assert f"{option}=n" in err
    assert "fix:" in err


def test_module_that_does_not_exist(capsys, tmp_path, fake_qemu_on_path):
    status, err = _run(capsys, "--results", str(tmp_path / "r"), "--module",
                       str(tmp_path / "test_hmm.ko"))
    assert status == cli.EXIT_HARNESS and "is not a file" in err


def test_coherent_mode_without_room_for_device_memory(capsys, tmp_path, fake_qemu_on_path):
    status, err = _run(capsys, "--results", str(tmp_path / "r"), "--mode", "all",
                       "--memory", "3072")
    assert status == cli.EXIT_HARNESS
    assert "device-coherent memory needs guest RAM at 0x100000000" in err
    assert "--mode private" in err


def test_no_command(capsys):
    assert cli.main([]) == cli.EXIT_HARNESS
    assert "no command given" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "problem"), [
    (["-k", "and and"], "-k 'and and' is not a pytest -k expression"),
    (["--test-timeout", "0"], "--test-timeout 0 is not a positive number of seconds"),
    (["--test-timeout", "-5"], "--test-timeout -5 is not a positive number of seconds"),
    (["--repeat", "0"], "--repeat 0: a selection runs at least once"),
    (["--run-timeout", "0"], "--run-timeout 0 is not a positive number of seconds"),
    (["--repeat", "2", "--reference"], "--repeat and --reference do not go together"),
])
def test_bad_selection_options_fail_before_any_build(capsys, tmp_path, argv, problem):
    status, err = _run(capsys, *argv, "--results", str(tmp_path / "r"))
    assert status == cli.EXIT_HARNESS
    assert problem in err and "fix:" in err
    assert not (tmp_path / "cache").exists(), "nothing may be downloaded or built"


@pytest.mark.parametrize(("argv", "timeout"), [
    ([], 5400), (["--repeat", "10"], 54000), (["--repeat", "10", "--run-timeout", "60"], 60)])
def test_the_run_timeout_grows_with_the_repetitions_unless_given(tmp_path, argv, timeout):
    args = cli.build_parser().parse_args(["run", *argv, "--results", str(tmp_path)])
    assert cli.options_from(args).run_timeout == timeout


def test_resume_takes_no_other_option(capsys, tmp_path):
    status, err = _run(capsys, "--resume", str(tmp_path), "--mode", "all")
    assert status == cli.EXIT_HARNESS
    assert "--resume takes no other option (given: mode)" in err


def test_resume_of_a_directory_without_a_run(capsys, tmp_path):
    status, err = _run(capsys, "--resume", str(tmp_path))
    assert status == cli.EXIT_HARNESS and "no run to continue there" in err


def test_bad_baseline_and_known_issues_files_are_named(capsys, tmp_path):
    status, err = _run(capsys, "--baseline", str(tmp_path / "nothing"),
                       "--results", str(tmp_path / "r"))
    assert status == cli.EXIT_HARNESS and "cannot read the baseline" in err
    mine = tmp_path / "mine.toml"
    mine.write_text('[[issue]]\nid = "x"\ntests = "*"\n')
    status, err = _run(capsys, "--known-issues", str(mine), "--results", str(tmp_path / "r"))
    assert status == cli.EXIT_HARNESS and f"{mine}: issue 1 has no 'expect'" in err


@pytest.mark.parametrize(("shard", "problem"), [
    ("3/2", "K counts from 1 to N=2"), ("0/0", "at least one shard"), ("x", "is not K/N")])
def test_bad_shard(capsys, tmp_path, shard, problem):
    status, err = _run(capsys, "--shard", shard, "--results", str(tmp_path))
    assert status == cli.EXIT_HARNESS
    assert f"--shard '{shard}'" in err and problem in err and "fix: give --shard K/N" in err
    assert not (tmp_path / "results.json").exists()


def test_durations_that_are_not_results(capsys, tmp_path):
    (tmp_path / "d.json").write_text('{"runs": []}')
    status, err = _run(capsys, "--shard", "1/2", "--durations", str(tmp_path / "d.json"),
                       "--results", str(tmp_path / "r"))
    assert status == cli.EXIT_HARNESS
    assert f"the durations file {tmp_path / 'd.json'} has no 'tests' list" in err


@pytest.mark.parametrize(("argv", "problem"), [
    (("--mode", "private", "--spm-addr", "0x100000000"), "--spm-addr is for device-coherent"),
    (("--mode", "coherent", "--spm-addr", "fourgig"), "--spm-addr 'fourgig' is not an address"),
])
def test_host_check_refuses_bad_spm_addresses_before_reading_the_machine(capsys, argv,
                                                                         problem):
    status = cli.main(["host-check", *argv])
    assert status == cli.EXIT_HARNESS
    assert problem in capsys.readouterr().err


def test_a_run_on_the_host_needs_the_users_yes(capsys, tmp_path):
    status, err = _run(capsys, "--target", "host", "--results", str(tmp_path))
    assert status == cli.EXIT_HARNESS
    assert "a kernel bug can take the machine down" in err and "--yes-this-host" in err


def test_spm_addresses_for_a_guest_are_refused(capsys, tmp_path):
    status, err = _run(capsys, "--spm-addr", "0x100000000", "--results", str(tmp_path))
    assert status == cli.EXIT_HARNESS and "go with --target host" in err
