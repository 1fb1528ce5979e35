"""Bad kernel input (bring your own kernel, matrix, bisect) ends with exit 125 and a message
naming the problem and the fix, before anything is downloaded or built; --dry-run shows how a
source tree is configured and built."""

import subprocess
from pathlib import Path

import pytest

from harness import cli


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HMM_HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "linux"
    for name in ("Makefile", "Kconfig", "arch/x86/Kconfig", "lib/test_hmm.c"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def _main(capsys, *argv):
    status = cli.main(list(argv))
    return status, capsys.readouterr().err


def test_debug_with_a_debian_kernel(capsys, tmp_path):
    status, err = _main(capsys, "run", "--results", str(tmp_path / "r"), "--debug")
    assert status == cli.EXIT_HARNESS
    assert "--debug configures a kernel tree" in err and "drop --debug" in err


def test_bzimage_alone_cannot_get_a_module(capsys, tmp_path):
    image = tmp_path / "bzImage"
    image.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 32)
    status, err = _main(capsys, "run", "--results", str(tmp_path / "r"), "--kernel", str(image))
    assert status == cli.EXIT_HARNESS
    assert "is a bzImage alone" in err and "--module" in err and "--modules-dir" in err


def test_modules_dir_needs_an_image(capsys, tmp_path, tree):
    status, err = _main(capsys, "run", "--results", str(tmp_path / "r"), "--kernel", str(tree),
                        "--modules-dir", str(tmp_path))
    assert status == cli.EXIT_HARNESS and "--modules-dir goes with a bzImage file" in err


def test_test_hmm_source_without_test_hmm(capsys, tmp_path):
    status, err = _main(capsys, "run", "--results", str(tmp_path / "r"),
                        "--test-hmm-source", str(tmp_path))
    assert status == cli.EXIT_HARNESS and "no test_hmm.c there" in err


def test_matrix_refuses_the_same_kernel_twice(capsys, tmp_path):
    status, err = _main(capsys, "run", "--results", str(tmp_path / "r"), "--kernel", "sid",
                        "--kernel", "sid")
    assert status == cli.EXIT_HARNESS and "same kernel twice" in err


def test_matrix_refuses_module(capsys, tmp_path):
    module = tmp_path / "test_hmm.ko"
    module.write_bytes(b"")
    status, err = _main(capsys, "run", "--results", str(tmp_path / "r"), "--kernel", "sid",
                        "--kernel", "experimental", "--module", str(module))
    assert status == cli.EXIT_HARNESS and "without --module" in err


def test_bisect_needs_a_kernel_tree_or_a_kernel(capsys, tmp_path):
    status, err = _main(capsys, "bisect", "--results", str(tmp_path / "r"), "--tree",
                        str(tmp_path), "--good", "a", "--bad", "b")
    assert status == cli.EXIT_HARNESS
    assert "not a kernel source tree, and neither --kernel nor --test-hmm-source" in err


def test_bisect_of_a_directory_that_is_no_repository(capsys, tmp_path, tree):
    status, err = _main(capsys, "bisect", "--results", str(tmp_path / "r"), "--tree",
                        str(tree), "--good", "v1", "--bad", "v2")
    assert status == cli.EXIT_HARNESS and "resolving --good v1" in err


def test_dry_run_configures_and_builds_a_tree_out_of_tree(capsys, tmp_path, tree):
    if subprocess.run(["which", "flex", "bison", "bc"], capture_output=True).returncode:
        pytest.skip("kernel build tools not installed")
    status, err = _main(capsys, "run", "--dry-run", "--results", str(tmp_path / "r"),
                        "--kernel", str(tree), "--debug")
    assert status == cli.EXIT_PASSED, err
    assert f"make -C {tree} O={tmp_path}/cache/trees/linux-" in err
    assert "KCONFIG_ALLCONFIG=" in err and "allnoconfig" in err and "bzImage modules" in err
    assert "'CC=ccache gcc'" in err or "CC=gcc" in err
    assert "M=" in err  # test_hmm is built on the host against the build directory


def test_dry_run_shows_the_extra_modules_build_as_the_build_does(capsys, tmp_path, tree):
    if subprocess.run(["which", "flex", "bison", "bc"], capture_output=True).returncode:
        pytest.skip("kernel build tools not installed")
    extra = Path(__file__).parents[1] / "kmod" / "hmm_faults"
    status, err = _main(capsys, "run", "--dry-run", "--results", str(tmp_path / "r"),
                        "--kernel", str(tree), "--extra-kmod", str(extra))
    assert status == cli.EXIT_PASSED, err
    copy = next(line for line in err.splitlines() if line.startswith(f"$ # copy {extra} into "))
    staged = copy.rsplit(" into ", 1)[1]
    assert f"M={staged}" in err or f"M='{staged}'" in err, err[-3000:]
