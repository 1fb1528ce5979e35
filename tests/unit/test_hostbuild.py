"""Building modules on the host for kernels built outside Debian: which compiler, which
make line, which module's vermagic to trust."""

from pathlib import Path

import pytest

from harness import hostbuild, kconfig
from harness.errors import MissingToolError, ModuleMismatchError

HOST_GCC = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0"


@pytest.fixture
def built_config(data_dir):
    return kconfig.parse((data_dir / "config-7.2.13-harness-base").read_text())


def test_module_compiler_matches_the_kernel(built_config):
    assert hostbuild.module_compiler_args(built_config, HOST_GCC, True, "t") == ("CC=ccache gcc",)
    assert hostbuild.module_compiler_args(built_config, HOST_GCC, False, "t") == ("CC=gcc",)


def test_kernel_built_by_another_gcc_is_refused(data_dir):
    debian = kconfig.parse((data_dir / "config-7.2.13+deb14-amd64").read_text())
    with pytest.raises(ModuleMismatchError) as error:
        hostbuild.module_compiler_args(debian, HOST_GCC, True, "the built tree /b")
    assert "gcc-16" in error.value.problem and "--module" in error.value.fix


def test_clang_kernel_builds_modules_with_llvm():
    assert hostbuild.module_compiler_args({"CONFIG_CC_IS_CLANG": "y"}, HOST_GCC, True, "t") == \
        ("LLVM=1",)


def test_make_line_for_a_module():
    build = hostbuild.HostBuild(Path("/cache/trees/linux/build"), ("CCACHE_DIR=/c",),
                                ("CC=ccache gcc",), "abc")
    assert hostbuild.module_make_argv(build, Path("/b/x")) == [
        "env", "CCACHE_DIR=/c", "make", "-C", "/cache/trees/linux/build", "M=/b/x",
        "CC=ccache gcc", "modules"]
    with pytest.raises(MissingToolError, match="no build directory"):
        hostbuild.module_make_argv(hostbuild.HostBuild(None), Path("/b"))


def test_guest_root_compiler_comes_from_the_recipe():
    assert hostbuild.guest_root_compiler("make\ngcc-16  # the compiler\npython3\n") == "gcc-16"
    assert hostbuild.guest_root_compiler() == "gcc-16"


def test_ccache_dir_defaults_to_the_harness_cache(monkeypatch):
    monkeypatch.delenv("CCACHE_DIR", raising=False)
    assert hostbuild.ccache_env(Path("/cache"))[0] == "CCACHE_DIR=/cache/ccache"
    monkeypatch.setenv("CCACHE_DIR", "/mine")
    assert hostbuild.ccache_env(Path("/cache"))[0] == "CCACHE_DIR=/mine"


def test_reference_module_from_modules_order(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/test_hmm.ko").write_bytes(b"")
    (tmp_path / "modules.order").write_text("lib/test_hmm.o\n")
    assert hostbuild.reference_module(tmp_path) == tmp_path / "lib/test_hmm.ko"
    assert hostbuild.reference_module(tmp_path / "lib") is None
