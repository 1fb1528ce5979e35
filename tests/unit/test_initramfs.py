"""The initramfs archive, checked with the real cpio tool."""

import shutil
import subprocess

import pytest

from harness import initramfs


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
