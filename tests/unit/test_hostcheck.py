"""The host's checks before a run on its own kernel, on Debian 7.2's real config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from harness import hostcheck, hostfacts
from harness.errors import HostNotReadyError, KernelConfigError

DATA = Path(__file__).parent / "data"
CONFIG = (DATA / "config-7.2.13+deb14-amd64").read_text()
CC = "x86_64-linux-gnu-gcc-16 (Debian 16.2.0-4) 16.2.0"
RELEASE = "7.2.13+deb14-amd64"


def ready_host(**changes: object) -> hostcheck.HostFacts:
    facts = hostcheck.HostFacts(
        release=RELEASE, is_root=True, build_dir_ready=True,
        config_sources=(f"/lib/modules/{RELEASE}/config",), config_text=CONFIG,
        compilers={"x86_64-linux-gnu-gcc-16": CC, "gcc": "gcc (Debian 12.2.0-14) 12.2.0"},
        memory=hostfacts.machine_memory(DATA / "spm" / "guest-7.2-memmap"))
    return dataclasses.replace(facts, **changes)


def test_a_ready_host_gets_its_compiler_and_both_chunks() -> None:
    assert CC in CONFIG
    ready = hostcheck.assess(ready_host(), coherent=True)
    assert ready.ready and ready.compiler == "x86_64-linux-gnu-gcc-16"
    assert ready.spm_choice is not None
    assert ready.spm_choice.addresses == (0x1_0000_0000, 0x1_1000_0000)
    assert ready.as_json()["config_source"] == f"/lib/modules/{RELEASE}/config"
    assert "spm_addr_dev1=0x110000000" in hostcheck.describe(ready)


def test_every_problem_is_named_at_once() -> None:
    assessment = hostcheck.assess(ready_host(is_root=False, build_dir_ready=False,
                                             compilers={}), coherent=False)
    assert len(assessment.problems) == 3
    refusal = assessment.refusal()
    assert "3 things stop a run" in refusal.problem and "needs root" in refusal.problem
    assert "apt install linux-headers-" in refusal.problem


@pytest.mark.parametrize(("changes", "problem"), [
    ({"is_root": False}, "needs root"),
    ({"loaded_modules": ("kvm", "test_hmm")}, "test_hmm is loaded already"),
    ({"build_dir_ready": False}, "no kernel build directory"),
    ({"config_sources": (), "config_text": ""}, "config is not readable"),
    ({"compilers": {"gcc": "gcc (Debian 12.2.0-14) 12.2.0"}}, "no compiler here matches"),
    ({"missing_python_modules": ("pytest_timeout",)}, "lacks pytest_timeout"),
])
def test_each_thing_a_host_lacks_is_named_with_its_fix(changes: dict[str, object],
                                                      problem: str) -> None:
    [refused] = hostcheck.assess(ready_host(**changes), coherent=False).problems
    assert isinstance(refused, HostNotReadyError)
    assert problem in refused.problem
    assert refused.fix


def test_the_compiler_error_says_which_package_to_install() -> None:
    [refused] = hostcheck.assess(ready_host(compilers={}), coherent=False).problems
    assert "apt install gcc-16" in refused.fix
    assert "x86_64-linux-gnu-gcc-16: not found" in refused.problem


def test_a_kernel_without_device_private_is_refused_as_in_qemu() -> None:
    config = CONFIG.replace("CONFIG_DEVICE_PRIVATE=y", "# CONFIG_DEVICE_PRIVATE is not set")
    [refused] = hostcheck.assess(ready_host(config_text=config), coherent=False).problems
    assert isinstance(refused, KernelConfigError)
    assert "CONFIG_DEVICE_PRIVATE" in refused.problem


def test_coherent_mode_on_a_host_whose_range_kmem_holds_is_refused() -> None:
    facts = ready_host(memory=hostfacts.machine_memory(DATA / "spm" / "guest-7.2-kmem"))
    [refused] = hostcheck.assess(facts, coherent=True).problems
    assert "dax0.0 (driver kmem)" in refused.problem
    assert hostcheck.assess(facts, coherent=False).ready


def test_clang_kernels_look_for_clang() -> None:
    assert hostcheck.compiler_candidates("Debian clang version 19.1.7 (3+b1)") == [
        "clang-19", "clang"]
    assert hostcheck.compiler_candidates(CC) == ["x86_64-linux-gnu-gcc-16", "gcc-16", "gcc"]


def test_the_config_is_looked_for_where_distributions_keep_it() -> None:
    assert hostcheck.config_sources(RELEASE) == (
        "/proc/config.gz", f"/boot/config-{RELEASE}", f"/lib/modules/{RELEASE}/config")
