"""The initramfs archive, checked with the real cpio tool."""

import shutil
import subprocess

import pytest

from harness import initramfs, kconfig


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio is not installed")
def test_archive_lists_and_extracts_with_cpio(tmp_path):
    archive = initramfs.newc_archive(initramfs.entries(
        b"\x7fELF-busybox", {"9pnet": b"module-a", "9p": b"module-b!"}, b"#!/bin/sh\n"))
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().split()
    assert {"bin/busybox", "init", "lib/modules/9p.ko", "lib/modules/load-order",
            "newroot"} <= set(listing)
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "lib/modules/load-order").read_text() == "9pnet\n9p\n"
    assert (tmp_path / "lib/modules/9p.ko").read_bytes() == b"module-b!"
    assert (tmp_path / "init").stat().st_mode & 0o111


def test_builtin_9p_is_not_loaded_as_a_module():
    assert initramfs.modules_to_load({"CONFIG_NETFS_SUPPORT": "m", "CONFIG_NET_9P": "m",
                                      "CONFIG_NET_9P_VIRTIO": "m", "CONFIG_9P_FS": "m"}) == \
        ["netfs", "9pnet", "9pnet_virtio", "9p"]
    assert initramfs.modules_to_load({"CONFIG_NETFS_SUPPORT": "y", "CONFIG_NET_9P": "y",
                                      "CONFIG_NET_9P_VIRTIO": "y", "CONFIG_9P_FS": "m"}) == ["9p"]


def test_compressed_modules_are_unpacked(data_dir):
    data = initramfs.module_bytes(data_dir / "9pnet.ko.xz")
    assert data[:4] == b"\x7fELF"


@pytest.fixture
def debian_72(data_dir):
    config = kconfig.parse((data_dir / "config-7.2.13+deb14-amd64").read_text())
    dependencies = initramfs.module_dependencies(
        (data_dir / "modules.dep-7.2.13-excerpt").read_text())
    return config, dependencies


def test_modules_dep_names_what_each_module_needs(debian_72):
    _, dependencies = debian_72
    assert dependencies["9p"] == ["9pnet", "netfs"]
    assert dependencies["erofs"] == [] and dependencies["virtio_blk"] == []
    assert dependencies["twofish-x86_64-3way"] == ["twofish-x86_64", "twofish_common"]


def test_debian_kernels_can_mount_the_root_image(debian_72):
    config, dependencies = debian_72
    assert initramfs.block_root_problem(config, dependencies) is None
    assert initramfs.block_root_modules(config) == ["virtio_blk", "erofs"]


def test_the_harness_base_config_has_no_erofs_and_says_so(data_dir):
    config = kconfig.parse((data_dir / "config-7.2.13-harness-base").read_text())
    assert initramfs.block_root_problem(config, None) == "the kernel has no CONFIG_VIRTIO_BLK"


def test_built_in_options_need_no_modules(debian_72):
    config, _ = debian_72
    built_in = {**config, "CONFIG_VIRTIO_BLK": "y", "CONFIG_EROFS_FS": "y"}
    assert initramfs.block_root_problem(built_in, None) is None
    assert initramfs.block_root_modules(built_in) == []


def test_a_module_with_dependencies_is_not_loaded_from_a_fixed_list(debian_72):
    config, dependencies = debian_72
    needy = {**dependencies, "erofs": ["lz4_decompress"]}
    assert initramfs.block_root_problem(config, needy) == \
        "erofs needs other modules (lz4_decompress)"
    missing = {k: v for k, v in dependencies.items() if k != "virtio_blk"}
    assert initramfs.block_root_problem(config, missing) == \
        "virtio_blk (CONFIG_VIRTIO_BLK=m) is not among the kernel's modules"
